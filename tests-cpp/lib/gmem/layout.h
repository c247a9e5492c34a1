/* SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause */
/*
 * The memory map of the small guests of libgmemvmm, in one place for the
 * VMM side (C++) and the guest side (assembler run through the C
 * preprocessor). The guests run in 32-bit protected mode with flat
 * segments and no paging (Vcpu::start_flat32()), so every address is
 * below 4 GiB.
 *
 *   GMEM_CODE_GPA      one ordinary slot of GMEM_CODE_SIZE bytes:
 *     + GMEM_GUEST_ENTRY    the guest's code (at most GMEM_CODE_MAX bytes)
 *     + GMEM_MAILBOX_GPA    one GMEM_MAILBOX_SIZE-byte mailbox per vCPU
 *     ... GMEM_STACK_TOP    one GMEM_STACK_SIZE-byte stack per vCPU, down
 *   GMEM_DATA_GPA      the guest_memfd slot (inside the iommufd mock
 *                      IOMMU's aperture and edu's 28-bit DMA mask, so a
 *                      device can see it at IOVA = GPA)
 *
 * A vCPU starts at GMEM_GUEST_ENTRY with ESP at its stack and ESI at its
 * mailbox. Guests report to the VMM with "out" to GMEM_DONE_PORT (a
 * command or a step done) and GMEM_FAIL_PORT (a failure the guest saw).
 */
#ifndef GMEM_LAYOUT_H
#define GMEM_LAYOUT_H

#define GMEM_PAGE_SIZE 0x1000
#define GMEM_CODE_GPA 0x0
#define GMEM_CODE_SIZE 0x10000
#define GMEM_GUEST_ENTRY 0x1000
#define GMEM_CODE_MAX 0x7000
#define GMEM_MAILBOX_GPA 0x8000
#define GMEM_MAILBOX_SIZE 64
#define GMEM_MAX_VCPUS 64
#define GMEM_STACK_TOP 0x10000
#define GMEM_STACK_SIZE 0x100
#define GMEM_DATA_GPA 0x1000000
#define GMEM_DONE_PORT 0xe0
#define GMEM_FAIL_PORT 0xe1

#ifdef __cplusplus
#include <cstdint>

namespace gmem::layout {

inline constexpr uint64_t kPage = GMEM_PAGE_SIZE;
inline constexpr uint64_t kCodeGpa = GMEM_CODE_GPA;
inline constexpr uint64_t kCodeSize = GMEM_CODE_SIZE;
inline constexpr uint64_t kEntry = GMEM_GUEST_ENTRY;
inline constexpr uint64_t kCodeMax = GMEM_CODE_MAX;
inline constexpr uint64_t kMailboxGpa = GMEM_MAILBOX_GPA;
inline constexpr uint64_t kMailboxSize = GMEM_MAILBOX_SIZE;
inline constexpr unsigned kMaxVcpus = GMEM_MAX_VCPUS;
inline constexpr uint64_t kStackTop = GMEM_STACK_TOP;
inline constexpr uint64_t kStackSize = GMEM_STACK_SIZE;
inline constexpr uint64_t kDataGpa = GMEM_DATA_GPA;
inline constexpr uint16_t kDonePort = GMEM_DONE_PORT;
inline constexpr uint16_t kFailPort = GMEM_FAIL_PORT;

// The GPA of vCPU @v's mailbox, and the top of its stack.
constexpr uint64_t mailbox_gpa(unsigned v)
{
	return kMailboxGpa + v * kMailboxSize;
}
constexpr uint64_t stack_top(unsigned v)
{
	return kStackTop - v * kStackSize;
}

static_assert(kEntry + kCodeMax <= kMailboxGpa);
static_assert(kMailboxGpa + kMaxVcpus * kMailboxSize <= kStackTop - kMaxVcpus * kStackSize);
static_assert(kStackTop <= kCodeGpa + kCodeSize);
static_assert(kCodeGpa + kCodeSize <= kDataGpa);

} // namespace gmem::layout
#endif

#endif /* GMEM_LAYOUT_H */

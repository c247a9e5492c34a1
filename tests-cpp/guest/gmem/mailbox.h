/* SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause */
/*
 * The mailbox guest (mailbox_guest.S): one guest program for every test
 * and benchmark that needs a guest to touch guest_memfd memory. Each vCPU
 * runs it with ESI at its own mailbox (gmem/layout.h). Before each
 * KVM_RUN the VMM writes one command there; the guest carries it out,
 * writes its results back, bumps @done and reports with an "out" of the
 * command code to GMEM_DONE_PORT, so one command is one trip to the
 * guest (plus one MAP_GPA_RANGE exit for GMEM_CMD_MAP_GPA). It then loads
 * the mailbox again: the next KVM_RUN runs the next command.
 *
 * Commands (all addresses are GPAs, all values dwords):
 *
 *   GMEM_CMD_HALT       hlt (KVM_EXIT_HLT); a zeroed mailbox halts
 *   GMEM_CMD_READ       out0 = [gpa], out1 = [gpa + offset]
 *   GMEM_CMD_WRITE      [gpa] = [gpa + offset] = value
 *   GMEM_CMD_FILL       count dwords of value from gpa on
 *   GMEM_CMD_TOUCH_READ  read the first dword of each of count pages
 *                        from gpa on; out0 = the last one read
 *   GMEM_CMD_TOUCH_WRITE write value into the first dword of each of
 *                        count pages from gpa on
 *   GMEM_CMD_MAP_GPA    the KVM_HC_MAP_GPA_RANGE hypercall for count
 *                       pages from gpa, attributes value
 *                       (KVM_MAP_GPA_RANGE_ENCRYPTED: to private);
 *                       ret = the hypercall's return value (RAX)
 */
#ifndef GMEM_MAILBOX_H
#define GMEM_MAILBOX_H

#include "gmem/layout.h"

#define GMEM_CMD_HALT 0
#define GMEM_CMD_READ 1
#define GMEM_CMD_WRITE 2
#define GMEM_CMD_FILL 3
#define GMEM_CMD_TOUCH_READ 4
#define GMEM_CMD_TOUCH_WRITE 5
#define GMEM_CMD_MAP_GPA 6

/* Byte offsets of the fields of one mailbox. */
#define GMEM_MB_CMD 0
#define GMEM_MB_GPA 4
#define GMEM_MB_COUNT 8
#define GMEM_MB_VALUE 12
#define GMEM_MB_OFFSET 16
#define GMEM_MB_OUT0 20
#define GMEM_MB_OUT1 24
#define GMEM_MB_RET 28
#define GMEM_MB_DONE 32

#ifdef __cplusplus
#include <cstddef>
#include <cstdint>

namespace gmem {

enum class MailboxCmd : uint32_t {
	kHalt = GMEM_CMD_HALT,
	kRead = GMEM_CMD_READ,
	kWrite = GMEM_CMD_WRITE,
	kFill = GMEM_CMD_FILL,
	kTouchRead = GMEM_CMD_TOUCH_READ,
	kTouchWrite = GMEM_CMD_TOUCH_WRITE,
	kMapGpa = GMEM_CMD_MAP_GPA,
};

// One vCPU's mailbox, as it lies in guest memory. The VMM writes the
// command fields and reads the results only while the vCPU is not in
// KVM_RUN.
struct Mailbox {
	MailboxCmd cmd;
	uint32_t gpa;
	uint32_t count;
	uint32_t value;
	uint32_t offset;
	uint32_t out0;
	uint32_t out1;
	uint32_t ret;
	// Commands completed since the vCPU started.
	uint32_t done;
};

static_assert(offsetof(Mailbox, cmd) == GMEM_MB_CMD);
static_assert(offsetof(Mailbox, gpa) == GMEM_MB_GPA);
static_assert(offsetof(Mailbox, count) == GMEM_MB_COUNT);
static_assert(offsetof(Mailbox, value) == GMEM_MB_VALUE);
static_assert(offsetof(Mailbox, offset) == GMEM_MB_OFFSET);
static_assert(offsetof(Mailbox, out0) == GMEM_MB_OUT0);
static_assert(offsetof(Mailbox, out1) == GMEM_MB_OUT1);
static_assert(offsetof(Mailbox, ret) == GMEM_MB_RET);
static_assert(offsetof(Mailbox, done) == GMEM_MB_DONE);
static_assert(sizeof(Mailbox) <= GMEM_MAILBOX_SIZE);

} // namespace gmem
#endif

#endif /* GMEM_MAILBOX_H */

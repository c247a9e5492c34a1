// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// RAII owners for KVM objects a VMM needs around guest_memfd: the KVM
// device, a VM of a chosen type, its vCPUs and its guest_memfd files; and
// the vCPU's exits decoded (VcpuExit, after rust-vmm kvm-ioctls'). Every
// call returns a Result naming the failed call.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "gmem/fd.h"
#include "gmem/result.h"

namespace gmem {

class Vm;
class Vcpu;
class GuestMemfd;

// Names of the x86 VM types KVM_CAP_VM_TYPES reports (bit n = type n):
// "KVM_X86_SW_PROTECTED_VM" for KVM_X86_SW_PROTECTED_VM.
const char *vm_type_name(unsigned long type);

// --- Decoded vCPU exits: what Vcpu::run() returns ---------------------------
//
// Each alternative is one reason KVM_RUN returned to userspace, with its
// fields decoded from kvm_run. Pointers and spans point into the vCPU's
// kvm_run area: what the VMM writes there (the data of an "in", a
// hypercall's return value) the guest sees when it is run next.

// KVM_EXIT_IO: an "in" or "out" of @size bytes (1, 2 or 4) at @port,
// @count times (string I/O). @data holds size * count bytes: the guest's
// for an out, to be filled by the VMM for an in.
struct IoExit {
	uint16_t port = 0;
	uint8_t size = 0;
	bool out = false;
	uint32_t count = 0;
	std::span<uint8_t> data;

	// The first value, little-endian (what a single "out" wrote).
	[[nodiscard]] uint32_t value() const;
	// Stores @v as the first value (the answer to a single "in").
	void set_value(uint32_t v) const;
};

// KVM_EXIT_HYPERCALL of any hypercall but KVM_HC_MAP_GPA_RANGE (only those
// enabled with KVM_CAP_EXIT_HYPERCALL exit).
struct HypercallExit {
	uint64_t nr = 0;
	uint64_t args[6] = {};
	// Where the guest's RAX comes from when it resumes.
	__u64 *ret = nullptr;
};

// KVM_EXIT_HYPERCALL of KVM_HC_MAP_GPA_RANGE: the guest asks for
// [gpa, gpa + size) to become private (@to_private) or shared. Answer with
// *ret = 0, or a negative KVM_E* code.
struct MapGpaRangeExit {
	uint64_t gpa = 0;
	uint64_t size = 0;
	bool to_private = false;
	__u64 *ret = nullptr;
};

// KVM_EXIT_MEMORY_FAULT (KVM_RUN fails with EFAULT): the guest accessed
// [gpa, gpa + size) as private (@is_private) or shared, and the file's
// state for it is the other; the VMM converts, or gives up.
struct MemoryFaultExit {
	uint64_t gpa = 0;
	uint64_t size = 0;
	bool is_private = false;
};

// KVM_EXIT_HLT.
struct HltExit {};

// KVM_EXIT_SHUTDOWN: a triple fault, or a shutdown request.
struct ShutdownExit {};

// Anything else, with its raw KVM_EXIT_* reason (for internal errors,
// kvm_run's internal.suberror says more).
struct OtherExit {
	uint32_t reason = 0;
};

using VcpuExit = std::variant<IoExit, HypercallExit, MapGpaRangeExit, MemoryFaultExit, HltExit,
			      ShutdownExit, OtherExit>;

// One line describing @exit, for logs and test failures ("io out port 0xe0
// size 1 value 0x1", "memory fault private gpa 0x1000000 size 0x1000").
std::string describe(const VcpuExit &exit);

inline std::ostream &operator<<(std::ostream &os, const VcpuExit &exit)
{
	return os << describe(exit);
}

// True if @exit is a single "out" to @port: how the small guests of this
// library report progress.
bool is_out(const VcpuExit &exit, uint16_t port);

// An open /dev/kvm.
class Kvm {
public:
	static Result<Kvm> open(const char *path = "/dev/kvm");

	// KVM_CHECK_EXTENSION on /dev/kvm: 0 if the capability is absent,
	// else (usually) 1 or the capability's value.
	Result<long> check_extension(long cap) const;
	// Bit mask of KVM_CAP_VM_TYPES (the default VM if the cap is absent).
	[[nodiscard]] unsigned long vm_types() const;
	[[nodiscard]] bool supports_vm_type(unsigned long type) const
	{
		return vm_types() & (1UL << type);
	}
	Result<Vm> create_vm(unsigned long type = 0) const;
	[[nodiscard]] int fd() const { return fd_.get(); }

private:
	explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
	UniqueFd fd_;
};

// The two interfaces to in-place conversion, both ioctls of the
// guest_memfd fd and both served by the same code in the kernel:
// KVM_GMEM_CONVERT_SHARED/PRIVATE (struct kvm_gmem_convert), and
// linux-next's KVM_SET_MEMORY_ATTRIBUTES2 (struct kvm_memory_attributes2,
// KVM_MEMORY_ATTRIBUTE_PRIVATE set for private, clear for shared).
enum class ConvertApi { kGmemConvert, kMemoryAttributes2 };

// "KVM_GMEM_CONVERT" or "KVM_SET_MEMORY_ATTRIBUTES2".
const char *convert_api_name(ConvertApi api);

// One guest_memfd file (KVM_CREATE_GUEST_MEMFD).
class GuestMemfd {
public:
	[[nodiscard]] int fd() const { return fd_.get(); }
	[[nodiscard]] uint64_t size() const { return size_; }
	[[nodiscard]] uint64_t flags() const { return flags_; }

	// fallocate(): allocate (FALLOC_FL_KEEP_SIZE), or punch a hole
	// (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE).
	Result<void> allocate(uint64_t offset, uint64_t len) const;
	Result<void> punch_hole(uint64_t offset, uint64_t len) const;
	// mmap() a range shared (needs GUEST_MEMFD_FLAG_MMAP).
	Result<Mapping> map(uint64_t offset, uint64_t len, int prot = PROT_READ | PROT_WRITE) const;
	// In-place conversion of [offset, offset + len): all or nothing. On
	// failure the error carries the kernel's error_offset (the first
	// offending page). EAGAIN is retryable: a page going private still
	// had references beyond guest_memfd's own.
	Result<void> convert_shared(uint64_t offset, uint64_t len) const;
	Result<void> convert_private(uint64_t offset, uint64_t len) const;
	// The same conversion through either interface.
	Result<void> convert(uint64_t offset, uint64_t len, bool to_private,
			     ConvertApi api = ConvertApi::kGmemConvert) const;
	// Closes the file; the kernel releases it when the last reference goes.
	void close() { fd_.reset(); }

private:
	friend class Vm;
	GuestMemfd(UniqueFd fd, uint64_t size, uint64_t flags)
	    : fd_(std::move(fd)), size_(size), flags_(flags)
	{
	}
	UniqueFd fd_;
	uint64_t size_;
	uint64_t flags_;
};

// A vCPU with its kvm_run area mapped.
class Vcpu {
public:
	[[nodiscard]] int fd() const { return fd_.get(); }
	[[nodiscard]] kvm_run *run_area() const { return reinterpret_cast<kvm_run *>(run_.data()); }
	// KVM_RUN until the vCPU exits to userspace; returns the exit decoded.
	// A memory fault (KVM_RUN's EFAULT with KVM_EXIT_MEMORY_FAULT) is an
	// exit, not an error; an interrupted run (EINTR) is an error.
	Result<VcpuExit> run() const;
	Result<kvm_regs> get_regs() const;
	Result<void> set_regs(const kvm_regs &regs) const;
	Result<kvm_sregs> get_sregs() const;
	Result<void> set_sregs(const kvm_sregs &sregs) const;
	// Starts the vCPU in 32-bit protected mode without paging, with flat
	// 4 GiB code (selector 0x8) and data (0x10) segments, at @rip with
	// stack @rsp and @rsi as its argument: how a small guest written in
	// flat 32-bit code (the demo's, the tests') starts.
	Result<void> start_flat32(uint64_t rip, uint64_t rsp, uint64_t rsi = 0) const;

private:
	friend class Vm;
	Vcpu(UniqueFd fd, Mapping run) : fd_(std::move(fd)), run_(std::move(run)) {}
	UniqueFd fd_;
	Mapping run_;
};

// A VM of one type. Keeps the /dev/kvm fd it came from open.
class Vm {
public:
	[[nodiscard]] int fd() const { return fd_.get(); }
	[[nodiscard]] unsigned long type() const { return type_; }
	// KVM_CHECK_EXTENSION on the VM (what this VM's type offers).
	Result<long> check_extension(long cap) const;
	Result<void> enable_cap(uint32_t cap, uint64_t arg0 = 0) const;

	// Flags KVM_CAP_GUEST_MEMFD_FLAGS reports for this VM (0 if none).
	[[nodiscard]] uint64_t guest_memfd_flags() const;
	Result<GuestMemfd> create_guest_memfd(uint64_t size, uint64_t flags = 0) const;

	// KVM_SET_USER_MEMORY_REGION2; gmem may be null for a plain slot.
	Result<void> set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
				       const GuestMemfd *gmem = nullptr, uint64_t gmem_offset = 0,
				       uint32_t flags = 0) const;
	// KVM_SET_MEMORY_ATTRIBUTES (KVM_MEMORY_ATTRIBUTE_PRIVATE or 0).
	Result<void> set_memory_attributes(uint64_t gpa, uint64_t size, uint64_t attrs) const;

	Result<Vcpu> create_vcpu(unsigned long id) const;
	// An ordinary slot of @size bytes of anonymous memory at @gpa, with
	// @len bytes of @code copied at offset @entry: a small guest's code
	// and stack. The mapping must outlive the slot.
	Result<Mapping> add_code_slot(uint32_t slot, uint64_t gpa, size_t size, const void *code,
				      size_t len, uint64_t entry) const;

private:
	friend class Kvm;
	Vm(UniqueFd fd, unsigned long type, int run_size)
	    : fd_(std::move(fd)), type_(type), run_size_(run_size)
	{
	}
	UniqueFd fd_;
	unsigned long type_;
	int run_size_;
};

} // namespace gmem

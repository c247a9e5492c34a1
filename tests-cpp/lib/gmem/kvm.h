// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// RAII owners for KVM objects a VMM needs around guest_memfd: the KVM
// device, a VM of a chosen type, its vCPUs and its guest_memfd files.
// Every call returns a Result naming the failed call.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gmem/fd.h"
#include "gmem/result.h"

namespace gmem {

class Vm;
class Vcpu;
class GuestMemfd;

// Names of the x86 VM types KVM_CAP_VM_TYPES reports (bit n = type n).
const char *vm_type_name(unsigned long type);

// An open /dev/kvm.
class Kvm {
public:
	static Result<Kvm> open(const char *path = "/dev/kvm");

	// KVM_CHECK_EXTENSION on /dev/kvm: < 0 on error.
	[[nodiscard]] long check_extension(long cap) const;
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
	// KVM_RUN; returns when the vCPU exits to userspace.
	Result<void> run() const;
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
	// KVM_CHECK_EXTENSION on the VM: < 0 on error.
	[[nodiscard]] long check_extension(long cap) const;
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

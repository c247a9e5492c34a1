// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// gmem-demo: a minimal VMM that runs a KVM_X86_SW_PROTECTED_VM whose data
// lives in one convertible guest_memfd, and converts the guest's pages
// between private and shared in place when the guest asks (MAP_GPA_RANGE
// hypercall): the same pages, no second backing, no copy. It narrates each
// step, checks what it can see from the host, prints a summary, and exits
// non-zero if any check failed.
#include <asm/kvm_para.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "gmem/kvm.h"
#include "testing/host_access.h"

extern "C" const uint8_t demo_guest_start[], demo_guest_end[], demo_guest_message[];

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kCodeGpa = 0x0;
constexpr uint64_t kCodeSize = 0x10000;
constexpr uint64_t kGuestEntry = 0x1000;
constexpr uint64_t kGuestStack = 0xf000;
constexpr uint64_t kDataGpa = 0x100000; // must match guest.S
constexpr uint64_t kDataPages = 16;
constexpr uint64_t kDataSize = kDataPages * kPage;
constexpr uint64_t kSharedPages = 4;
constexpr uint16_t kStepPort = 0xe0;
constexpr uint16_t kFailPort = 0xe1;
constexpr uint32_t kSecret = 0x31565250; // "PRV1"

int failures = 0;

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::vprintf(fmt, ap);
	va_end(ap);
	std::fflush(stdout);
}

void check(bool ok, const char *what)
{
	say("    [%s] %s\n", ok ? " ok " : "FAIL", what);
	if (!ok)
		failures++;
}

struct Stats {
	uint64_t to_shared_pages = 0;
	uint64_t to_private_pages = 0;
	uint64_t hypercalls = 0;
	uint64_t peak_allocated = 0;
	uint64_t peak_two_backing = 0;
};

class Demo {
public:
	bool setup();
	bool run();
	void summary() const;

private:
	bool handle_hypercall(kvm_run *run);
	bool handle_step(uint8_t step);
	// Pages of the guest_memfd that are allocated (in its page cache).
	uint64_t allocated_pages() const;
	// Shared pages right now, per the host's view.
	uint64_t shared_pages() const;
	void account();

	std::optional<gmem::Kvm> kvm_;
	std::optional<gmem::Vm> vm_;
	std::optional<gmem::Mapping> code_;
	std::optional<gmem::GuestMemfd> gmem_;
	std::optional<gmem::Mapping> data_;
	std::optional<gmem::Vcpu> vcpu_;
	Stats stats_;
	bool shared_[kDataPages] = {};
};

bool Demo::setup()
{
	say("==> Creating a KVM_X86_SW_PROTECTED_VM\n");
	auto kvm = gmem::Kvm::open();
	if (!kvm) {
		say("    %s\n", kvm.error().message().c_str());
		return false;
	}
	kvm_.emplace(std::move(kvm).value());
	if (!kvm_->supports_vm_type(KVM_X86_SW_PROTECTED_VM) ||
	    kvm_->check_extension(KVM_CAP_GUEST_MEMFD_CONVERT) <= 0) {
		say("    this kernel offers no SW-protected VM with in-place conversion\n");
		return false;
	}
	auto vm = kvm_->create_vm(KVM_X86_SW_PROTECTED_VM);
	if (!vm) {
		say("    %s\n", vm.error().message().c_str());
		return false;
	}
	vm_.emplace(std::move(vm).value());
	vm_->enable_cap(KVM_CAP_EXIT_HYPERCALL, 1ULL << KVM_HC_MAP_GPA_RANGE).value();

	// Code and stack: ordinary memory, never private.
	code_.emplace(gmem::Mapping::anonymous(kCodeSize).value());
	const size_t len = demo_guest_end - demo_guest_start;
	std::memcpy(code_->data() + kGuestEntry, demo_guest_start, len);
	vm_->set_memory_region(0, kCodeGpa, kCodeSize, code_->data()).value();
	say("    code slot: %zu bytes of guest code at GPA 0x%llx (anonymous memory)\n", len,
	    (unsigned long long)kGuestEntry);

	// Data: one convertible guest_memfd, private at first. The slot's
	// userspace address is the file's own mapping: there is no second
	// backing for shared pages.
	gmem_.emplace(vm_->create_guest_memfd(kDataSize,
					      GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE)
			      .value());
	data_.emplace(gmem_->map(0, kDataSize).value());
	vm_->set_memory_region(1, kDataGpa, kDataSize, data_->data(), &*gmem_, 0).value();
	say("    data slot: %llu pages at GPA 0x%llx, one guest_memfd (MMAP|CONVERTIBLE), "
	    "all private\n",
	    (unsigned long long)kDataPages, (unsigned long long)kDataGpa);

	vcpu_.emplace(vm_->create_vcpu(0).value());
	kvm_sregs s = vcpu_->get_sregs().value();
	kvm_segment code{};
	code.base = 0;
	code.limit = 0xffffffff;
	code.selector = 0x8;
	code.type = 11; // execute/read, accessed
	code.present = 1;
	code.s = 1;
	code.db = 1;
	code.g = 1;
	kvm_segment data = code;
	data.selector = 0x10;
	data.type = 3; // read/write, accessed
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.cr0 |= 1; // protected mode, no paging
	vcpu_->set_sregs(s).value();
	kvm_regs r{};
	r.rip = kGuestEntry;
	r.rsp = kGuestStack;
	r.rflags = 2;
	vcpu_->set_regs(r).value();
	return true;
}

uint64_t Demo::allocated_pages() const
{
	unsigned char vec[kDataPages];
	if (mincore(data_->data(), kDataSize, vec) != 0)
		return 0;
	uint64_t n = 0;
	for (unsigned char v : vec)
		n += v & 1;
	return n;
}

uint64_t Demo::shared_pages() const
{
	uint64_t n = 0;
	for (bool s : shared_)
		n += s;
	return n;
}

void Demo::account()
{
	uint64_t alloc = allocated_pages();
	stats_.peak_allocated = std::max(stats_.peak_allocated, alloc);
	// A two-backing VMM keeps every private page in guest_memfd and each
	// shared page in a second, anonymous backing.
	stats_.peak_two_backing = std::max(stats_.peak_two_backing, alloc + shared_pages());
}

bool Demo::handle_hypercall(kvm_run *run)
{
	stats_.hypercalls++;
	const uint64_t gpa = run->hypercall.args[0];
	const uint64_t pages = run->hypercall.args[1];
	const bool to_private = run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED;
	const uint64_t off = gpa - kDataGpa;
	say("==> Guest hypercall MAP_GPA_RANGE: GPA 0x%llx, %llu pages -> %s\n",
	    (unsigned long long)gpa, (unsigned long long)pages, to_private ? "private" : "shared");
	if (gpa < kDataGpa || off + pages * kPage > kDataSize) {
		run->hypercall.ret = -KVM_EINVAL;
		check(false, "range lies in the guest_memfd slot");
		return true;
	}
	uint64_t before = allocated_pages();
	gmem::Result<void> res = to_private ? gmem_->convert_private(off, pages * kPage)
					    : gmem_->convert_shared(off, pages * kPage);
	for (int tries = 0; !res.ok() && res.err() == EAGAIN && tries < 10; tries++)
		res = to_private ? gmem_->convert_private(off, pages * kPage)
				 : gmem_->convert_shared(off, pages * kPage);
	if (!res.ok()) {
		say("    %s\n", res.error().message().c_str());
		run->hypercall.ret = -KVM_EINVAL;
		check(false, "in-place conversion");
		return true;
	}
	for (uint64_t i = 0; i < pages; i++)
		shared_[off / kPage + i] = !to_private;
	(to_private ? stats_.to_private_pages : stats_.to_shared_pages) += pages;
	say("    %s(offset 0x%llx, %llu bytes) on the guest_memfd fd\n",
	    to_private ? "KVM_GMEM_CONVERT_PRIVATE" : "KVM_GMEM_CONVERT_SHARED",
	    (unsigned long long)off, (unsigned long long)(pages * kPage));
	check(allocated_pages() == before, "no page allocated or freed by the conversion");
	account();
	run->hypercall.ret = 0;
	return true;
}

bool Demo::handle_step(uint8_t step)
{
	using gmem::testing::host_touch;
	switch (step) {
	case 1: {
		say("==> Guest wrote its secret into all %llu data pages (private)\n",
		    (unsigned long long)kDataPages);
		account();
		bool all_private = true;
		for (uint64_t i = 0; i < kDataPages; i++)
			all_private &= !host_touch(data_->data() + i * kPage);
		check(all_private, "the host's mapping gets SIGBUS on every private page");
		check(allocated_pages() == kDataPages, "the pages live in guest_memfd");
		break;
	}
	case 2: {
		say("==> Guest sees its pages shared, contents intact\n");
		uint32_t word = 0;
		std::memcpy(&word, data_->data() + 8, sizeof(word));
		check(word == kSecret, "the host reads the guest's data in the shared pages");
		check(!host_touch(data_->data() + kSharedPages * kPage),
		      "the next page is still private (SIGBUS)");
		break;
	}
	case 3: {
		const char *msg = reinterpret_cast<const char *>(data_->data());
		say("==> Guest left a message in shared memory; the VMM reads it through mmap:\n");
		say("    \"%.*s\"\n", 80, msg);
		check(std::strcmp(msg, reinterpret_cast<const char *>(demo_guest_message)) == 0,
		      "message matches");
		break;
	}
	case 4: {
		say("==> Guest took the pages back (private) and still reads its message\n");
		bool none = true;
		for (uint64_t i = 0; i < kSharedPages; i++)
			none &= !host_touch(data_->data() + i * kPage);
		check(none, "the host's mapping is gone: SIGBUS on the converted pages");
		break;
	}
	default:
		check(false, "known step");
	}
	return true;
}

bool Demo::run()
{
	kvm_run *run = vcpu_->run_area();
	for (;;) {
		auto r = vcpu_->run();
		if (!r) {
			say("    %s\n", r.error().message().c_str());
			return false;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_HYPERCALL:
			handle_hypercall(run);
			break;
		case KVM_EXIT_IO: {
			const uint8_t v = *(reinterpret_cast<uint8_t *>(run) + run->io.data_offset);
			if (run->io.port == kFailPort) {
				say("==> The guest reports failure %u\n", v);
				failures++;
				return false;
			}
			if (run->io.port != kStepPort)
				return false;
			handle_step(v);
			break;
		}
		case KVM_EXIT_HLT:
			say("==> Guest halted\n");
			return true;
		case KVM_EXIT_MEMORY_FAULT:
			say("==> KVM_EXIT_MEMORY_FAULT at GPA 0x%llx (unexpected)\n",
			    (unsigned long long)run->memory_fault.gpa);
			failures++;
			return false;
		default:
			say("==> unexpected exit %u\n", run->exit_reason);
			failures++;
			return false;
		}
	}
}

void Demo::summary() const
{
	say("\n==> Summary\n");
	say("    pages converted to shared:   %llu\n", (unsigned long long)stats_.to_shared_pages);
	say("    pages converted to private:  %llu\n", (unsigned long long)stats_.to_private_pages);
	say("    MAP_GPA_RANGE hypercall exits: %llu\n", (unsigned long long)stats_.hypercalls);
	say("    peak guest data memory, in place:   %llu pages\n",
	    (unsigned long long)stats_.peak_allocated);
	say("    same run with two backings:         %llu pages (private in guest_memfd + "
	    "shared in anonymous memory)\n",
	    (unsigned long long)stats_.peak_two_backing);
	say("    checks failed: %d\n", failures);
}

} // namespace

int main()
{
	try {
		Demo demo;
		if (!demo.setup())
			return 1;
		bool ok = demo.run();
		demo.summary();
		return ok && failures == 0 ? 0 : 1;
	} catch (const gmem::SysErrorException &e) {
		say("==> FAILED: %s\n", e.error().message().c_str());
		return 1;
	}
}

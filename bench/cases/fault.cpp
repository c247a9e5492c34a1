// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// fault: what a fault on a guest_memfd that cannot be converted costs,
// through 7.3's UAPI alone, so that one binary measures the series and
// pristine 7.3 alike (not in the default run: --only fault). The series
// makes the file the owner of shared/private state; a file created without
// GUEST_MEMFD_FLAG_CONVERTIBLE must not pay for that.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "case.h"
#include "fixtures.h"
#include "gmem/kvm.h"
#include "gmem/layout.h"
#include "gmem/mailbox_guest.h"

namespace bench {
namespace {

using gmem::GuestMemfd;
using gmem::Kvm;
using gmem::Mailbox;
using gmem::MailboxCmd;
using gmem::Mapping;
using gmem::UniqueFd;
using gmem::Vcpu;
using gmem::Vm;

// The VM's "pages_4k" statistic (KVM_GET_STATS_FD): the 4 KiB leaf SPTEs
// its TDP MMU holds, so that the checks see that a pre-fault mapped every
// page and that the undo step zapped them, on any kernel since 5.14.
class PagesStat {
public:
	explicit PagesStat(const Vm &vm)
	{
		const int f = ::ioctl(vm.fd(), KVM_GET_STATS_FD, nullptr);
		if (f < 0)
			throw Skip{ std::string("KVM_GET_STATS_FD: ") + std::strerror(errno) };
		fd_.reset(f);
		kvm_stats_header h{};
		read_at(&h, sizeof(h), 0);
		const size_t desc_size = sizeof(kvm_stats_desc) + h.name_size;
		std::vector<char> descs(desc_size * h.num_desc);
		read_at(descs.data(), descs.size(), h.desc_offset);
		for (uint32_t i = 0; i < h.num_desc; i++) {
			const auto *d = reinterpret_cast<const kvm_stats_desc *>(descs.data() +
										 i * desc_size);
			if (std::strncmp(d->name, "pages_4k", h.name_size) == 0) {
				offset_ = h.data_offset + d->offset;
				return;
			}
		}
		throw Skip{ "no pages_4k VM statistic (not x86's TDP MMU)" };
	}

	[[nodiscard]] uint64_t read() const
	{
		uint64_t v = 0;
		read_at(&v, sizeof(v), offset_);
		return v;
	}

private:
	void read_at(void *buf, size_t len, uint64_t off) const
	{
		if (::pread(fd_.get(), buf, len, static_cast<off_t>(off)) !=
		    static_cast<ssize_t>(len))
			throw CheckFailed{ std::string("reading the VM's statistics: ") +
					   std::strerror(errno) };
	}

	UniqueFd fd_;
	uint64_t offset_ = 0;
};

enum class Kind {
	kHostTouch,		// the host's first touch of the mmap, file bound
	kHostTouchUnbound,	// the same, the file in no memslot
	kVcpuPrivate,		// KVM_PRE_FAULT_MEMORY of private GPAs, holes
	kVcpuPrivateAllocated,	// the same, the pages already allocated
	kVcpuShared,		// KVM_PRE_FAULT_MEMORY of shared GPAs, holes
	kGuestPrivateAllocated, // a running guest's writes, pages allocated
};

// N pages of one guest_memfd created without GUEST_MEMFD_FLAG_CONVERTIBLE,
// faulted in and dropped again.
//
// host-touch: a KVM_X86_DEFAULT_VM's file with GUEST_MEMFD_FLAG_MMAP |
// GUEST_MEMFD_FLAG_INIT_SHARED (7.3 starts files shared only on VMs
// without private memory), bound to a memslot; the host writes one byte
// of each page of the mmap: N first-touch faults, each allocating and
// clearing a page. host-touch-unbound: the file in no memslot. undo: a
// hole punch of the whole file.
//
// vcpu-private: a KVM_X86_SW_PROTECTED_VM, a file without flags bound to a
// memslot whose GFNs KVM_SET_MEMORY_ATTRIBUTES made private (7.3's
// confidential VM); KVM_PRE_FAULT_MEMORY of the N GPAs runs KVM's TDP
// fault path for each page, allocating it in the file. undo: hole punch.
// vcpu-private-allocated: the pages stay allocated; the fault path
// without the allocation. undo: the attributes to shared and back to
// private, which zaps the SPTEs and frees nothing.
// vcpu-shared: the KVM_X86_DEFAULT_VM and file of host-touch, the memslot
// guest_memfd-only (its userspace address is the file's mmap);
// KVM_PRE_FAULT_MEMORY of the N shared GPAs. undo: hole punch.
//
// guest-private-allocated: vcpu-private-allocated's VM with the mailbox
// guest (tests-cpp/guest/) running; one KVM_RUN in which the guest writes
// a word of each page (TOUCH_WRITE): N nested NPT faults and their exits
// to the vCPU's host, KVM's fault path inside. Up to 64 MiB (nested NPT
// faults under TCG are slow).
class FaultCost : public Variant {
public:
	FaultCost(uint64_t pages, Kind kind) : Variant(pages), kind_(kind)
	{
		const bool guest = kind_ == Kind::kGuestPrivateAllocated;
		if (guest && pages_ > 16384)
			throw Skip{ "kept to 64 MiB (nested NPT faults under TCG)" };
		auto kvm = Kvm::open();
		if (!kvm)
			throw Skip{ kvm.error().message() };
		const bool priv = guest || kind_ == Kind::kVcpuPrivate ||
				  kind_ == Kind::kVcpuPrivateAllocated;
		const unsigned long type = priv ? KVM_X86_SW_PROTECTED_VM : KVM_X86_DEFAULT_VM;
		if (!kvm->supports_vm_type(type))
			throw Skip{ std::string("no ") + gmem::vm_type_name(type) };
		vm_.emplace(kvm->create_vm(type).value());
		const uint64_t flags =
			priv ? 0 : GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
		if ((vm_->guest_memfd_flags() & flags) != flags)
			throw Skip{ "guest_memfd without MMAP and INIT_SHARED on the default VM" };
		gmem_.emplace(vm_->create_guest_memfd(len_, flags).value());
		if (!priv)
			map_ = gmem_->map(0, len_).value();
		if (kind_ == Kind::kHostTouchUnbound)
			return;
		// The guest addresses 32 bits; the others take the usual GPA.
		gpa_ = guest ? gmem::layout::kDataGpa : kGpa;
		// A private slot's shared side: an address range nobody touches.
		if (priv)
			hva_ = Mapping::map(-1, len_, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
				       .value();
		void *hva = priv ? hva_.data() : map_.data();
		vm_->set_memory_region(kSlot, gpa_, len_, hva, &*gmem_, 0).value();
		if (priv)
			vm_->set_memory_attributes(gpa_, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE)
				.value();
		if (kind_ == Kind::kVcpuPrivateAllocated || guest)
			gmem_->allocate(0, len_).value();
		if (kind_ == Kind::kHostTouch)
			return;
		if (guest) {
			namespace layout = gmem::layout;
			const auto code = gmem::mailbox_guest_code();
			code_ = vm_->add_code_slot(0, layout::kCodeGpa, layout::kCodeSize,
						   code.data(), code.size(), layout::kEntry)
					.value();
		}
		vcpu_.emplace(vm_->create_vcpu(0).value());
		stat_.emplace(*vm_);
		if (!guest)
			return;
		vcpu_->start_flat32(gmem::layout::kEntry, gmem::layout::stack_top(0),
				    gmem::layout::mailbox_gpa(0))
			.value();
		// One pass, so that the guest's code and stack are mapped and
		// every data page is cleared (fallocate() leaves them not up
		// to date): each round trip then maps the data pages alone.
		for (auto &ph : round_trip())
			for (auto &st : ph.steps)
				st.fn();
		base_ = stat_->read();
	}

	std::vector<Phase> round_trip() override
	{
		Step fault = kind_ == Kind::kGuestPrivateAllocated
				     ? Step{ "guest_touch", [this] { guest_touch(); } }
			     : vcpu_ ? Step{ "pre_fault", [this] { pre_fault(); } }
				     : Step{ "touch", [this] { touch(map_.data(), pages_, 1); } };
		Step punch{ "punch", [this] { gmem_->punch_hole(0, len_).value(); } };
		if (kind_ != Kind::kVcpuPrivateAllocated && kind_ != Kind::kGuestPrivateAllocated)
			return { { "fault", { fault } }, { "undo", { punch } } };
		return {
			{ "fault", { fault } },
			{ "undo",
			  { { "to_shared",
			      [this] { vm_->set_memory_attributes(gpa_, len_, 0).value(); } },
			    { "to_private",
			      [this] {
				      vm_->set_memory_attributes(gpa_, len_,
								 KVM_MEMORY_ATTRIBUTE_PRIVATE)
					      .value();
			      } } } },
		};
	}

	// One round trip, looking after each phase: the fault phase maps every
	// page (SPTEs for a vCPU, page cache pages that the host wrote for a
	// touch), the undo phase leaves none.
	void check() override
	{
		auto phases = round_trip();
		require(mapped() == 0, "fault: nothing mapped before the fault phase");
		for (auto &st : phases[0].steps)
			st.fn();
		const uint64_t got = mapped();
		require(got == pages_, "fault: the fault phase mapped " + std::to_string(got) +
					       " of " + std::to_string(pages_) + " pages");
		if (!vcpu_)
			for (uint64_t i = 0; i < pages_; i++)
				require(map_.data()[i * kPage] == static_cast<uint8_t>(1 + i),
					"fault: the host's writes read back");
		for (auto &st : phases[1].steps)
			st.fn();
		const uint64_t left = mapped();
		require(left == 0,
			"fault: the undo phase left " + std::to_string(left) + " pages mapped");
	}

	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "vm_type", vm_->type() }, { "gmem_flags", gmem_->flags() } };
	}

private:
	// KVM_PRE_FAULT_MEMORY of the whole range: KVM's TDP fault path for
	// each page, as a vCPU's first access would run it (minus the exit).
	void pre_fault() const
	{
		if (const int err = pre_fault_memory(vcpu_->fd(), gpa_, len_))
			throw CheckFailed{ std::string("KVM_PRE_FAULT_MEMORY: ") +
					   std::strerror(err) };
	}

	// The mailbox guest's TOUCH_WRITE: one word written to each page, in
	// one KVM_RUN.
	void guest_touch() const
	{
		namespace layout = gmem::layout;
		auto *mb = reinterpret_cast<Mailbox *>(code_.data() + layout::mailbox_gpa(0) -
						       layout::kCodeGpa);
		mb->cmd = MailboxCmd::kTouchWrite;
		mb->gpa = static_cast<uint32_t>(gpa_);
		mb->count = static_cast<uint32_t>(pages_);
		mb->value = 1;
		auto e = vcpu_->run();
		if (!e || !gmem::mailbox_done(*e, MailboxCmd::kTouchWrite))
			throw CheckFailed{ "fault: KVM_RUN " + (e ? "exit " + gmem::describe(*e)
								  : e.error().message()) };
	}

	// What the fault phase maps: the VM's 4 KiB SPTEs beyond those of
	// the guest's code and stack, or the file's pages in the page cache
	// (mincore() looks without faulting).
	[[nodiscard]] uint64_t mapped() const
	{
		if (stat_)
			return stat_->read() - base_;
		return resident_pages(map_.data(), len_);
	}

	Kind kind_;
	uint64_t gpa_ = kGpa;
	std::optional<Vm> vm_;
	std::optional<GuestMemfd> gmem_;
	Mapping map_;
	Mapping hva_;
	Mapping code_;
	std::optional<Vcpu> vcpu_;
	std::optional<PagesStat> stat_;
	// 4 KiB SPTEs that stay: the guest's code, stack and mailbox.
	uint64_t base_ = 0;
};

VariantDef def(const char *name, Kind kind)
{
	return { name, [kind](uint64_t n) { return std::make_unique<FaultCost>(n, kind); } };
}

} // namespace

Group fault_group()
{
	return { "fault",
		 "faults on a non-convertible guest_memfd, 7.3 UAPI only (the same binary on "
		 "the series and on 7.3)",
		 { "fault", "undo", "round_trip" },
		 { def("host-touch", Kind::kHostTouch),
		   def("host-touch-unbound", Kind::kHostTouchUnbound),
		   def("vcpu-private", Kind::kVcpuPrivate),
		   def("vcpu-private-allocated", Kind::kVcpuPrivateAllocated),
		   def("vcpu-shared", Kind::kVcpuShared),
		   def("guest-private-allocated", Kind::kGuestPrivateAllocated) },
		 false };
}

} // namespace bench

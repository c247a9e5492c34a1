// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// touch: a vCPU running guest code touches N pages right after their
// conversion (KVM's fault path), in place against two backings.
#include "case.h"
#include "fixtures.h"
#include "gmem/layout.h"
#include "gmem/mailbox_guest.h"
#include "options.h"

namespace bench {
namespace {

using gmem::GuestMemfd;
using gmem::Mailbox;
using gmem::MailboxCmd;
using gmem::MailboxCommand;
using gmem::Mapping;
using gmem::Vm;
namespace layout = gmem::layout;

// touch: what the guest pays after a conversion. A vCPU runs the mailbox
// guest, which writes the first word of each of N pages: its first
// touch of the converted pages, KVM's fault path included (NPT faults in a
// nested guest here). in-place: one convertible guest_memfd, convert then
// touch. two-backing (7.3): attributes, the dropped side punched; shared,
// the guest's touch faults the memfd's pages in; private, the pages are
// allocated first (fallocate), so that the private touch is KVM's fault
// path alone in both: a convertible slot asking the file for the state
// against 7.3's attributes.
class GuestTouch : public Variant {
public:
	GuestTouch(uint64_t pages, bool in_place) : Variant(pages), in_place_(in_place)
	{
		// A pass over 1 GiB is 262144 NPT faults of a nested guest, some
		// 10^10 instructions under TCG per round trip: too long a run.
		if (pages_ > 16384)
			throw Skip{ "kept to 64 MiB (nested NPT faults under TCG)" };
		if (in_place_) {
			f_.emplace(ConvertibleFile::bound(len_, GUEST_MEMFD_FLAG_MMAP,
							  layout::kDataGpa));
			f_->gmem().allocate(0, len_).value();
			f_->guest().add_vcpu().value();
			return;
		}
		// 7.3's VM is no ConvertibleGuest: the same guest program and
		// memory map, set up by hand.
		vm_.emplace(make_vm());
		own_.emplace(vm_->create_guest_memfd(len_, 0).value());
		const auto code = gmem::mailbox_guest_code();
		code_ = vm_->add_code_slot(0, layout::kCodeGpa, layout::kCodeSize, code.data(),
					   code.size(), layout::kEntry)
				.value();
		sh_.emplace(len_);
		vm_->set_memory_region(kSlot, layout::kDataGpa, len_, sh_->map.data(), &*own_, 0)
			.value();
		vm_->set_memory_attributes(layout::kDataGpa, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE)
			.value();
		own_->allocate(0, len_).value();
		vcpu_.emplace(vm_->create_vcpu(0).value());
		vcpu_->start_flat32(layout::kEntry, layout::stack_top(0), layout::mailbox_gpa(0))
			.value();
	}
	std::vector<Phase> round_trip() override
	{
		Step touch{ "guest_touch", [this] { guest_write(); } };
		if (in_place_)
			return {
				{ "to_shared",
				  { { "convert",
				      [this] { f_->guest().convert(0, len_, false).value(); } },
				    touch } },
				{ "to_private",
				  { { "convert",
				      [this] { f_->guest().convert(0, len_, true).value(); } },
				    touch } },
			};
		return {
			{ "to_shared",
			  { { "attributes",
			      [this] {
				      vm_->set_memory_attributes(layout::kDataGpa, len_, 0).value();
			      } },
			    { "punch_private", [this] { gmem().punch_hole(0, len_).value(); } },
			    touch } },
			{ "to_private",
			  { { "attributes",
			      [this] {
				      vm_->set_memory_attributes(layout::kDataGpa, len_,
								 KVM_MEMORY_ATTRIBUTE_PRIVATE)
					      .value();
			      } },
			    { "punch_shared", [this] { sh_->punch(len_); } },
			    { "alloc_private", [this] { gmem().allocate(0, len_).value(); } },
			    touch } },
		};
	}
	void check() override
	{
		// The guest's writes to shared pages are what the host sees.
		auto phases = round_trip();
		for (auto &st : phases[0].steps)
			st.fn();
		const uint8_t *host = in_place_ ? f_->data() : sh_->map.data();
		for (uint64_t i = 0; i < pages_; i++)
			require(host[i * kPage] == 1, "touch: the guest wrote every shared page");
		for (auto &st : phases[1].steps)
			st.fn();
	}

private:
	[[nodiscard]] const GuestMemfd &gmem() const { return f_ ? f_->gmem() : *own_; }

	// One command of the guest: it writes 1 to the first word of every
	// page.
	void guest_write()
	{
		const MailboxCommand c{ MailboxCmd::kTouchWrite,
					static_cast<uint32_t>(layout::kDataGpa),
					static_cast<uint32_t>(pages_), 1 };
		if (in_place_) {
			if (auto r = gmem::mailbox_exec(f_->guest(), 0, c); !r)
				throw CheckFailed{ "touch: " + r.error().message() };
			return;
		}
		auto *mb = reinterpret_cast<Mailbox *>(code_.data() + layout::mailbox_gpa(0) -
						       layout::kCodeGpa);
		mb->cmd = c.cmd;
		mb->gpa = c.gpa;
		mb->count = c.count;
		mb->value = c.value;
		auto e = vcpu_->run();
		if (!e || !gmem::mailbox_done(*e, c.cmd))
			throw CheckFailed{ "touch: KVM_RUN " + (e ? "exit " + gmem::describe(*e)
								  : e.error().message()) };
	}

	bool in_place_;
	// in-place: a ConvertibleGuest with its vCPU; else 7.3's two backings.
	std::optional<ConvertibleFile> f_;
	std::optional<Vm> vm_;
	std::optional<GuestMemfd> own_;
	Mapping code_;
	std::optional<SharedBacking> sh_;
	std::optional<gmem::Vcpu> vcpu_;
};

} // namespace

Group touch_group()
{
	return { "touch",
		 "guest's first touch of N converted pages (vCPU running): in place vs two "
		 "backings",
		 { "to_shared", "to_private", "round_trip" },
		 { { "in-place", [](uint64_t n) { return std::make_unique<GuestTouch>(n, true); } },
		   { "two-backing",
		     [](uint64_t n) { return std::make_unique<GuestTouch>(n, false); } } },
		 false };
}

} // namespace bench

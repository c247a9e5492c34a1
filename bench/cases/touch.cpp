// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// touch: a vCPU running guest code touches N pages right after their
// conversion (KVM's fault path), in place against two backings.
#include <cstring>

#include "case.h"
#include "fixtures.h"
#include "options.h"

// bench_guest.S
extern "C" const uint8_t bench_guest_start[], bench_guest_end[];

namespace bench {
namespace {

using gmem::GuestMemfd;
using gmem::Mapping;
using gmem::Vm;

// touch: what the guest pays after a conversion. A vCPU runs guest code
// (bench_guest.S) that writes the first word of each of N pages: its first
// touch of the converted pages, KVM's fault path included (NPT faults in a
// nested guest here). in-place: one convertible guest_memfd, convert then
// touch. two-backing (7.3): attributes, the dropped side punched; shared,
// the guest's touch faults the memfd's pages in; private, the pages are
// allocated first (fallocate), so that the private touch is KVM's fault
// path alone in both: a convertible slot asking the file for the state
// against 7.3's attributes.
class GuestTouch : public Variant {
public:
	static constexpr uint64_t kCodeSize = 64 * 1024;
	static constexpr uint64_t kEntry = 0x1000;
	static constexpr uint64_t kMailbox = 0x8000;
	static constexpr uint64_t kDataGpa = 1ULL << 30; // below 4 GiB: no paging
	static constexpr uint16_t kDonePort = 0xe0;

	GuestTouch(uint64_t pages, bool in_place)
	    : Variant(pages), in_place_(in_place), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, in_place ? GUEST_MEMFD_FLAG_MMAP |
								 GUEST_MEMFD_FLAG_CONVERTIBLE
						       : 0)
			 .value()),
	      code_(Mapping::anonymous(kCodeSize).value())
	{
		// A pass over 1 GiB is 262144 NPT faults of a nested guest, some
		// 10^10 instructions under TCG per round trip: too long a run.
		if (pages_ > 16384)
			throw Skip{ "kept to 64 MiB (nested NPT faults under TCG)" };
		std::memcpy(code_.data() + kEntry, bench_guest_start,
			    bench_guest_end - bench_guest_start);
		vm_.set_memory_region(0, 0, kCodeSize, code_.data()).value();
		if (in_place_) {
			m_ = g_.map(0, len_).value();
			vm_.set_memory_region(kSlot, kDataGpa, len_, m_.data(), &g_, 0).value();
		} else {
			sh_.emplace(len_);
			vm_.set_memory_region(kSlot, kDataGpa, len_, sh_->map.data(), &g_, 0)
				.value();
			vm_.set_memory_attributes(kDataGpa, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE)
				.value();
		}
		g_.allocate(0, len_).value();
		vcpu_.emplace(vm_.create_vcpu(0).value());
		vcpu_->start_flat32(kEntry, 0xf000, kMailbox).value();
	}
	std::vector<Phase> round_trip() override
	{
		Step touch{ "guest_touch", [this] { guest_write(); } };
		if (in_place_)
			return {
				{ "to_shared",
				  { { "convert", [this] { g_.convert_shared(0, len_).value(); } },
				    touch } },
				{ "to_private",
				  { { "convert", [this] { g_.convert_private(0, len_).value(); } },
				    touch } },
			};
		return {
			{ "to_shared",
			  { { "attributes",
			      [this] { vm_.set_memory_attributes(kDataGpa, len_, 0).value(); } },
			    { "punch_private", [this] { g_.punch_hole(0, len_).value(); } },
			    touch } },
			{ "to_private",
			  { { "attributes",
			      [this] {
				      vm_.set_memory_attributes(kDataGpa, len_,
								KVM_MEMORY_ATTRIBUTE_PRIVATE)
					      .value();
			      } },
			    { "punch_shared", [this] { sh_->punch(len_); } },
			    { "alloc_private", [this] { g_.allocate(0, len_).value(); } },
			    touch } },
		};
	}
	void check() override
	{
		// The guest's writes to shared pages are what the host sees.
		auto phases = round_trip();
		for (auto &st : phases[0].steps)
			st.fn();
		const uint8_t *host = in_place_ ? m_.data() : sh_->map.data();
		for (uint64_t i = 0; i < pages_; i++)
			require(host[i * kPage] == 1, "touch: the guest wrote every shared page");
		for (auto &st : phases[1].steps)
			st.fn();
	}

private:
	// One KVM_RUN: the guest writes 1 to the first word of every page.
	void guest_write()
	{
		auto *mb = reinterpret_cast<uint32_t *>(code_.data() + kMailbox);
		mb[0] = static_cast<uint32_t>(kDataGpa);
		mb[1] = static_cast<uint32_t>(pages_);
		mb[2] = 1;
		auto r = vcpu_->run();
		const kvm_run *run = vcpu_->run_area();
		if (!r.has_value() || run->exit_reason != KVM_EXIT_IO || run->io.port != kDonePort)
			throw CheckFailed{ "touch: KVM_RUN " +
					   (r.has_value() ? std::string("ok")
							  : r.error().message()) +
					   ", exit " + std::to_string(run->exit_reason) };
	}

	bool in_place_;
	Vm vm_;
	GuestMemfd g_;
	Mapping code_;
	Mapping m_;
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

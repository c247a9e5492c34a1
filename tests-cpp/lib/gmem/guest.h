// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// ConvertibleGuest: the smallest VMM a program needs to run a guest whose
// memory lives in one convertible guest_memfd. It probes once whether the
// kernel can (a KVM_X86_SW_PROTECTED_VM, in-place conversion,
// GUEST_MEMFD_FLAG_CONVERTIBLE), creates the VM with an ordinary code slot
// and one guest_memfd data slot (gmem/layout.h), loads the guest's code,
// starts vCPUs in flat 32-bit mode, and by default answers the guest's
// MAP_GPA_RANGE hypercalls with an in-place conversion of the file.
//
//	if (auto why = ConvertibleGuest::unsupported(); !why.empty())
//		return skip(why);
//	GuestConfig cfg;
//	cfg.code = { start, end };
//	auto g = ConvertibleGuest::create(cfg).value();
//	unsigned v = g.add_vcpu().value();
//	for (;;) {
//		VcpuExit e = g.run(v).value(); // MAP_GPA_RANGE handled inside
//		...
//	}
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "gmem/fd.h"
#include "gmem/kvm.h"
#include "gmem/layout.h"
#include "gmem/result.h"

namespace gmem {

// How convert() retries a conversion that failed with EAGAIN (a page
// going private still had references beyond guest_memfd's own, e.g. a
// transient get_user_pages()): up to @attempts tries in all, sleeping
// @backoff (doubled after each try) in between.
struct RetryPolicy {
	unsigned attempts = 10;
	std::chrono::microseconds backoff{ 100 };
};

struct GuestConfig {
	// The guest's code, copied to GMEM_GUEST_ENTRY (at most GMEM_CODE_MAX
	// bytes).
	std::span<const uint8_t> code;
	// The data slot: size and GPA, and flags of the guest_memfd beyond
	// GUEST_MEMFD_FLAG_CONVERTIBLE, which is always set. With
	// GUEST_MEMFD_FLAG_MMAP (the default) the file is mapped and the
	// mapping is the slot's userspace address: shared pages need no
	// second backing.
	uint64_t data_size = 16 * layout::kPage;
	uint64_t data_gpa = layout::kDataGpa;
	uint64_t gmem_flags = GUEST_MEMFD_FLAG_MMAP;
	// Answer MAP_GPA_RANGE inside run() with convert(); with false, run()
	// returns the exit and the caller answers it.
	bool handle_map_gpa = true;
	RetryPolicy retry;
	// Which interface convert() uses; a CONVERTIBLE file takes both.
	ConvertApi api = ConvertApi::kGmemConvert;
};

// What the conversions of one guest did (convert() and the MAP_GPA_RANGE
// exits run() answered).
struct ConversionStats {
	std::atomic<uint64_t> map_gpa_exits{ 0 };
	std::atomic<uint64_t> to_shared_pages{ 0 };
	std::atomic<uint64_t> to_private_pages{ 0 };
	// Tries that failed with EAGAIN and were retried.
	std::atomic<uint64_t> retries{ 0 };
	std::atomic<uint64_t> failures{ 0 };
};

class ConvertibleGuest {
public:
	// Why this kernel cannot run a ConvertibleGuest, or "" if it can.
	// Probed once per process: /dev/kvm, KVM_X86_SW_PROTECTED_VM,
	// and the guest_memfd flags (MMAP, CONVERTIBLE) it offers.
	static const std::string &unsupported();

	// A KVM_X86_SW_PROTECTED_VM with KVM_CAP_EXIT_HYPERCALL for
	// MAP_GPA_RANGE, the code slot (slot 0, anonymous memory) holding
	// @config.code and the data slot (slot 1, the guest_memfd; all
	// private). No vCPU yet.
	static Result<ConvertibleGuest> create(const GuestConfig &config);

	ConvertibleGuest(ConvertibleGuest &&) noexcept = default;
	ConvertibleGuest &operator=(ConvertibleGuest &&) noexcept = default;

	[[nodiscard]] const Kvm &kvm() const { return kvm_; }
	[[nodiscard]] const Vm &vm() const { return vm_; }
	[[nodiscard]] const GuestMemfd &gmem() const { return gmem_; }
	[[nodiscard]] const GuestConfig &config() const { return config_; }
	// The file's mapping (empty without GUEST_MEMFD_FLAG_MMAP): page i of
	// the data slot is data() + i * GMEM_PAGE_SIZE.
	[[nodiscard]] uint8_t *data() const { return data_.data(); }
	[[nodiscard]] uint64_t data_size() const { return config_.data_size; }
	[[nodiscard]] uint64_t data_gpa() const { return config_.data_gpa; }
	// The code slot's memory: GPA g is code() + g - GMEM_CODE_GPA.
	[[nodiscard]] uint8_t *code() const { return code_.data(); }
	// The offset in the file of @gpa, if the data slot holds it.
	[[nodiscard]] std::optional<uint64_t> offset_of(uint64_t gpa) const;

	// Creates the next vCPU (ID = its index) and starts it at the guest's
	// entry in flat 32-bit mode, with ESP at its stack and ESI at its
	// mailbox. Returns the index. Not to be called while another thread
	// runs a vCPU of this guest.
	Result<unsigned> add_vcpu();
	[[nodiscard]] unsigned vcpus() const { return static_cast<unsigned>(vcpus_.size()); }
	[[nodiscard]] const Vcpu &vcpu(unsigned v) const { return vcpus_.at(v); }

	// Runs vCPU @v until an exit this class does not answer itself: with
	// handle_map_gpa, a MAP_GPA_RANGE inside the data slot is converted
	// in place (the guest gets 0, or -KVM_EINVAL if the range is outside
	// the slot or the conversion failed; a failed conversion is also
	// returned as the error). Threads may run different vCPUs at once.
	Result<VcpuExit> run(unsigned v);

	// The single entry point for in-place conversion: [offset, offset +
	// size) of the file becomes private or shared, all or nothing, retried
	// on EAGAIN as config().retry says. The error of the last try carries
	// the kernel's error_offset.
	Result<void> convert(uint64_t offset, uint64_t size, bool to_private);

	[[nodiscard]] const ConversionStats &stats() const { return *stats_; }

private:
	ConvertibleGuest(GuestConfig config, Kvm kvm, Vm vm, GuestMemfd gmem, Mapping code,
			 Mapping data);
	// Answers one MAP_GPA_RANGE exit.
	Result<void> answer(const MapGpaRangeExit &m);

	GuestConfig config_;
	Kvm kvm_;
	Vm vm_;
	GuestMemfd gmem_;
	Mapping code_;
	Mapping data_;
	std::deque<Vcpu> vcpus_;
	std::unique_ptr<ConversionStats> stats_;
};

} // namespace gmem

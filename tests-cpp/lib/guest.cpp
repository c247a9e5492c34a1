// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "gmem/guest.h"

#include <asm/kvm_para.h>
#include <linux/kvm_para.h>

#include <cstring>
#include <thread>

namespace gmem {

namespace {

constexpr uint32_t kCodeSlot = 0;
constexpr uint32_t kDataSlot = 1;

std::string probe()
{
	auto kvm = Kvm::open();
	if (!kvm)
		return kvm.error().message();
	if (!kvm->supports_vm_type(KVM_X86_SW_PROTECTED_VM))
		return "KVM_X86_SW_PROTECTED_VM not supported by this host";
	auto vm = kvm->create_vm(KVM_X86_SW_PROTECTED_VM);
	if (!vm)
		return vm.error().message();
	const uint64_t want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE;
	if ((vm->guest_memfd_flags() & want) != want)
		return "KVM_X86_SW_PROTECTED_VM does not offer MMAP|CONVERTIBLE guest_memfd files";
	return "";
}

} // namespace

const std::string &ConvertibleGuest::unsupported()
{
	static const std::string why = probe();
	return why;
}

ConvertibleGuest::ConvertibleGuest(GuestConfig config, Kvm kvm, Vm vm, GuestMemfd gmem,
				   Mapping code, Mapping data)
    : config_(std::move(config)), kvm_(std::move(kvm)), vm_(std::move(vm)), gmem_(std::move(gmem)),
      code_(std::move(code)), data_(std::move(data)), stats_(std::make_unique<ConversionStats>())
{
}

Result<ConvertibleGuest> ConvertibleGuest::create(const GuestConfig &config)
{
	if (config.code.size() > layout::kCodeMax)
		return fail(EINVAL, "ConvertibleGuest: guest code larger than GMEM_CODE_MAX");
	if (config.data_size % layout::kPage || config.data_gpa % layout::kPage ||
	    config.data_gpa < layout::kCodeGpa + layout::kCodeSize)
		return fail(EINVAL,
			    "ConvertibleGuest: data slot not page-aligned or over the code");
	auto kvm = Kvm::open();
	if (!kvm)
		return unexpected(kvm.error());
	auto vm = kvm->create_vm(KVM_X86_SW_PROTECTED_VM);
	if (!vm)
		return unexpected(vm.error());
	if (auto r = vm->enable_cap(KVM_CAP_EXIT_HYPERCALL, 1ULL << KVM_HC_MAP_GPA_RANGE); !r)
		return unexpected(r.error());
	auto code = vm->add_code_slot(kCodeSlot, layout::kCodeGpa, layout::kCodeSize,
				      config.code.data(), config.code.size(), layout::kEntry);
	if (!code)
		return unexpected(code.error());
	auto gmem = vm->create_guest_memfd(config.data_size,
					   config.gmem_flags | GUEST_MEMFD_FLAG_CONVERTIBLE);
	if (!gmem)
		return unexpected(gmem.error());
	Mapping data;
	if (config.gmem_flags & GUEST_MEMFD_FLAG_MMAP) {
		auto m = gmem->map(0, config.data_size);
		if (!m)
			return unexpected(m.error());
		data = std::move(m).value();
	}
	if (auto r = vm->set_memory_region(kDataSlot, config.data_gpa, config.data_size,
					   data.data(), &*gmem, 0);
	    !r)
		return unexpected(r.error());
	return ConvertibleGuest(config, std::move(kvm).value(), std::move(vm).value(),
				std::move(gmem).value(), std::move(code).value(), std::move(data));
}

std::optional<uint64_t> ConvertibleGuest::offset_of(uint64_t gpa) const
{
	if (gpa < config_.data_gpa || gpa - config_.data_gpa >= config_.data_size)
		return std::nullopt;
	return gpa - config_.data_gpa;
}

Result<unsigned> ConvertibleGuest::add_vcpu()
{
	const unsigned v = vcpus();
	if (v >= layout::kMaxVcpus)
		return fail(EINVAL, "ConvertibleGuest: more than GMEM_MAX_VCPUS vCPUs");
	auto vcpu = vm_.create_vcpu(v);
	if (!vcpu)
		return unexpected(vcpu.error());
	if (auto r = vcpu->start_flat32(layout::kEntry, layout::stack_top(v),
					layout::mailbox_gpa(v));
	    !r)
		return unexpected(r.error());
	vcpus_.push_back(std::move(vcpu).value());
	return v;
}

Result<void> ConvertibleGuest::convert(uint64_t offset, uint64_t size, bool to_private)
{
	auto backoff = config_.retry.backoff;
	const unsigned attempts = std::max(config_.retry.attempts, 1u);
	for (unsigned i = 1;; i++) {
		auto r = gmem_.convert(offset, size, to_private, config_.api);
		if (r) {
			auto &pages =
				to_private ? stats_->to_private_pages : stats_->to_shared_pages;
			pages += size / layout::kPage;
			return r;
		}
		if (r.error().err != EAGAIN || i >= attempts) {
			stats_->failures++;
			return r;
		}
		stats_->retries++;
		std::this_thread::sleep_for(backoff);
		backoff *= 2;
	}
}

Result<void> ConvertibleGuest::answer(const MapGpaRangeExit &m)
{
	stats_->map_gpa_exits++;
	const auto off = offset_of(m.gpa);
	if (!off || m.size > config_.data_size - *off) {
		*m.ret = static_cast<uint64_t>(-KVM_EINVAL);
		return {};
	}
	auto r = convert(*off, m.size, m.to_private);
	*m.ret = r ? 0 : static_cast<uint64_t>(-KVM_EINVAL);
	return r;
}

Result<VcpuExit> ConvertibleGuest::run(unsigned v)
{
	const Vcpu &vcpu = vcpus_.at(v);
	for (;;) {
		auto exit = vcpu.run();
		if (!exit)
			return exit;
		auto *m = std::get_if<MapGpaRangeExit>(&*exit);
		if (!m || !config_.handle_map_gpa)
			return exit;
		if (auto r = answer(*m); !r)
			return unexpected(r.error());
	}
}

} // namespace gmem

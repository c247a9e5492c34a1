// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// gmem-info: print what the running kernel reports about guest_memfd,
// iommufd and the KVM VM types it supports, and whether it can run a
// ConvertibleGuest (what gmem-demo needs). Run inside the guest by
// harness/demo.sh before the demo.

#include <cstdio>
#include <string>

#include "gmem/fd.h"
#include "gmem/guest.h"
#include "gmem/iommufd.h"
#include "gmem/kvm.h"

namespace {

std::string flag_names(uint64_t flags)
{
	std::string s;
	auto add = [&](uint64_t bit, const char *name) {
		if (flags & bit) {
			s += s.empty() ? "" : "|";
			s += name;
			flags &= ~bit;
		}
	};
	add(GUEST_MEMFD_FLAG_MMAP, "MMAP");
	add(GUEST_MEMFD_FLAG_INIT_SHARED, "INIT_SHARED");
	add(GUEST_MEMFD_FLAG_CONVERTIBLE, "CONVERTIBLE");
	if (flags)
		s += (s.empty() ? "0x" : "|0x") + std::to_string(flags);
	return s.empty() ? "none" : s;
}

} // namespace

int main()
{
	std::printf("gmem-info: kernel report\n");
	auto kvm = gmem::Kvm::open();
	if (!kvm) {
		std::printf("  %s\n", kvm.error().message().c_str());
		return 1;
	}
	std::printf("  KVM_CAP_VM_TYPES: 0x%lx\n", kvm->vm_types());
	std::printf("  KVM_CAP_GUEST_MEMFD: %ld\n",
		    kvm->check_extension(KVM_CAP_GUEST_MEMFD).value_or(-1));
	for (unsigned long type : { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_SEV_VM,
				    KVM_X86_SEV_ES_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM }) {
		if (!kvm->supports_vm_type(type)) {
			std::printf("  %-24s not supported by this host\n",
				    gmem::vm_type_name(type));
			continue;
		}
		auto vm = kvm->create_vm(type);
		if (!vm) {
			std::printf("  %-24s %s\n", gmem::vm_type_name(type),
				    vm.error().message().c_str());
			continue;
		}
		long attrs = vm->check_extension(KVM_CAP_MEMORY_ATTRIBUTES).value_or(-1);
		std::printf("  %-24s guest_memfd flags: %s; memory attributes: 0x%lx\n",
			    gmem::vm_type_name(type), flag_names(vm->guest_memfd_flags()).c_str(),
			    attrs < 0 ? 0 : attrs);
	}
	const std::string &why = gmem::ConvertibleGuest::unsupported();
	std::printf("  in-place conversion (ConvertibleGuest): %s\n",
		    why.empty() ? "supported" : why.c_str());
	auto iommufd = gmem::Iommufd::open();
	std::printf("  /dev/iommu (iommufd): %s\n",
		    iommufd ? "present" : iommufd.error().message().c_str());
	if (iommufd) {
		auto mirrors = iommufd->mirrors_guest_memfd();
		std::printf("  IOMMU_IOAS_MAP_FILE of a convertible guest_memfd: %s\n",
			    !mirrors   ? mirrors.error().message().c_str()
			    : *mirrors ? "mirrored, no pins"
				       : "refused (no CONFIG_IOMMUFD_GUEST_MEMFD)");
	}
	return 0;
}

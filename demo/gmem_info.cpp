// SPDX-License-Identifier: GPL-2.0-only
//
// gmem-info: print what the running kernel reports about guest_memfd,
// iommufd and the KVM VM types it supports. Run inside the guest by
// harness/demo.sh until the mini-VMM demo replaces it.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace {

class Fd {
public:
	explicit Fd(int fd = -1) : fd_(fd) {}
	Fd(const Fd &) = delete;
	Fd &operator=(const Fd &) = delete;
	Fd(Fd &&o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
	~Fd()
	{
		if (fd_ >= 0)
			close(fd_);
	}
	[[nodiscard]] int get() const { return fd_; }
	[[nodiscard]] bool valid() const { return fd_ >= 0; }

private:
	int fd_;
};

struct VmType {
	unsigned long type;
	const char *name;
};

constexpr VmType kVmTypes[] = {
	{ 0, "KVM_X86_DEFAULT_VM" },
	{ 1, "KVM_X86_SW_PROTECTED_VM" },
	{ 2, "KVM_X86_SEV_VM" },
	{ 3, "KVM_X86_SEV_ES_VM" },
	{ 4, "KVM_X86_SNP_VM" },
	{ 5, "KVM_X86_TDX_VM" },
};

std::string flag_names(unsigned long long flags)
{
	std::string s;
	auto add = [&](unsigned long long bit, const char *name) {
		if (flags & bit) {
			s += s.empty() ? "" : "|";
			s += name;
			flags &= ~bit;
		}
	};
	add(1ULL << 0, "MMAP");
	add(1ULL << 1, "INIT_SHARED");
	add(1ULL << 2, "CONVERTIBLE");
	if (flags)
		s += (s.empty() ? "" : "|") + std::to_string(flags);
	return s.empty() ? "none" : s;
}

} // namespace

int main()
{
	std::printf("gmem-info: kernel report\n");
	Fd kvm(open("/dev/kvm", O_RDWR | O_CLOEXEC));
	if (!kvm.valid()) {
		std::printf("  /dev/kvm: %s\n", std::strerror(errno));
		return 1;
	}
	std::printf("  KVM API version: %d\n", ioctl(kvm.get(), KVM_GET_API_VERSION, 0));
	int types = ioctl(kvm.get(), KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
	std::printf("  KVM_CAP_VM_TYPES: 0x%x\n", types);
	std::printf("  KVM_CAP_GUEST_MEMFD: %d\n",
		    ioctl(kvm.get(), KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD));
	for (const auto &t : kVmTypes) {
		if (!(types & (1 << t.type))) {
			std::printf("  %-24s not supported by this host\n", t.name);
			continue;
		}
		Fd vm(ioctl(kvm.get(), KVM_CREATE_VM, t.type));
		if (!vm.valid()) {
			std::printf("  %-24s KVM_CREATE_VM: %s\n", t.name, std::strerror(errno));
			continue;
		}
		int flags = ioctl(vm.get(), KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
		int priv = ioctl(vm.get(), KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES);
		std::printf("  %-24s guest_memfd flags: %s; memory attributes: 0x%x\n", t.name,
			    flag_names(flags < 0 ? 0 : flags).c_str(), priv < 0 ? 0 : priv);
	}
	Fd iommu(open("/dev/iommu", O_RDWR | O_CLOEXEC));
	std::printf("  /dev/iommu (iommufd): %s\n",
		    iommu.valid() ? "present" : std::strerror(errno));
	return 0;
}

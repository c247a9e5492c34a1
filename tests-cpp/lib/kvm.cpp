// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "gmem/kvm.h"

#include <asm/kvm_para.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm_para.h>
#include <sys/ioctl.h>

#include <cstdio>
#include <cstring>

namespace gmem {

const char *vm_type_name(unsigned long type)
{
	switch (type) {
	case KVM_X86_DEFAULT_VM:
		return "KVM_X86_DEFAULT_VM";
	case KVM_X86_SW_PROTECTED_VM:
		return "KVM_X86_SW_PROTECTED_VM";
	case KVM_X86_SEV_VM:
		return "KVM_X86_SEV_VM";
	case KVM_X86_SEV_ES_VM:
		return "KVM_X86_SEV_ES_VM";
	case KVM_X86_SNP_VM:
		return "KVM_X86_SNP_VM";
	case KVM_X86_TDX_VM:
		return "KVM_X86_TDX_VM";
	default:
		return "unknown VM type";
	}
}

Result<Kvm> Kvm::open(const char *path)
{
	int fd = ::open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail(std::string("open ") + path);
	return Kvm(UniqueFd(fd));
}

Result<long> Kvm::check_extension(long cap) const
{
	return check(::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap),
		     "KVM_CHECK_EXTENSION(" + std::to_string(cap) + ")");
}

unsigned long Kvm::vm_types() const
{
	long t = check_extension(KVM_CAP_VM_TYPES).value_or(0);
	return t > 0 ? static_cast<unsigned long>(t) : 1UL << KVM_X86_DEFAULT_VM;
}

Result<Vm> Kvm::create_vm(unsigned long type) const
{
	int run_size = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0)
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	int fd = ::ioctl(fd_.get(), KVM_CREATE_VM, type);
	if (fd < 0)
		return fail(std::string("KVM_CREATE_VM(") + vm_type_name(type) + ")");
	return Vm(UniqueFd(fd), type, run_size);
}

Result<long> Vm::check_extension(long cap) const
{
	return check(::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap),
		     "KVM_CHECK_EXTENSION(" + std::to_string(cap) + ") on the VM");
}

Result<void> Vm::enable_cap(uint32_t cap, uint64_t arg0) const
{
	kvm_enable_cap c{};
	c.cap = cap;
	c.args[0] = arg0;
	return check_void(::ioctl(fd_.get(), KVM_ENABLE_CAP, &c),
			  "KVM_ENABLE_CAP(" + std::to_string(cap) + ")");
}

uint64_t Vm::guest_memfd_flags() const
{
	long f = check_extension(KVM_CAP_GUEST_MEMFD_FLAGS).value_or(0);
	return f > 0 ? static_cast<uint64_t>(f) : 0;
}

Result<GuestMemfd> Vm::create_guest_memfd(uint64_t size, uint64_t flags) const
{
	kvm_create_guest_memfd args{};
	args.size = size;
	args.flags = flags;
	int fd = ::ioctl(fd_.get(), KVM_CREATE_GUEST_MEMFD, &args);
	if (fd < 0)
		return fail("KVM_CREATE_GUEST_MEMFD");
	return GuestMemfd(UniqueFd(fd), size, flags);
}

Result<void> Vm::set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
				   const GuestMemfd *gmem, uint64_t gmem_offset,
				   uint32_t flags) const
{
	kvm_userspace_memory_region2 r{};
	r.slot = slot;
	r.flags = flags | (gmem ? KVM_MEM_GUEST_MEMFD : 0);
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = reinterpret_cast<uint64_t>(hva);
	if (gmem) {
		r.guest_memfd = static_cast<uint32_t>(gmem->fd());
		r.guest_memfd_offset = gmem_offset;
	}
	return check_void(::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION2, &r),
			  "KVM_SET_USER_MEMORY_REGION2(slot " + std::to_string(slot) + ")");
}

Result<void> Vm::set_memory_attributes(uint64_t gpa, uint64_t size, uint64_t attrs) const
{
	kvm_memory_attributes a{};
	a.address = gpa;
	a.size = size;
	a.attributes = attrs;
	return check_void(::ioctl(fd_.get(), KVM_SET_MEMORY_ATTRIBUTES, &a),
			  "KVM_SET_MEMORY_ATTRIBUTES");
}

Result<Vcpu> Vm::create_vcpu(unsigned long id) const
{
	int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, id);
	if (fd < 0)
		return fail("KVM_CREATE_VCPU(" + std::to_string(id) + ")");
	UniqueFd vcpu(fd);
	auto run = Mapping::map(fd, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED);
	if (!run)
		return fail(errno_of(run), "mmap kvm_run");
	return Vcpu(std::move(vcpu), std::move(run).value());
}

Result<Mapping> Vm::add_code_slot(uint32_t slot, uint64_t gpa, size_t size, const void *code,
				  size_t len, uint64_t entry) const
{
	if (entry > size || len > size - entry)
		return fail(EINVAL, "add_code_slot: code beyond the slot");
	auto mem = Mapping::anonymous(size);
	if (!mem)
		return unexpected(mem.error());
	if (len)
		std::memcpy(mem->data() + entry, code, len);
	if (auto r = set_memory_region(slot, gpa, size, mem->data()); !r)
		return unexpected(r.error());
	return mem;
}

Result<void> Vcpu::start_flat32(uint64_t rip, uint64_t rsp, uint64_t rsi) const
{
	auto s = get_sregs();
	if (!s)
		return unexpected(s.error());
	kvm_segment code{};
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
	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->cr0 |= 1; // protected mode, no paging
	if (auto r = set_sregs(*s); !r)
		return r;
	kvm_regs r{};
	r.rip = rip;
	r.rsp = rsp;
	r.rsi = rsi;
	r.rflags = 2;
	return set_regs(r);
}

uint32_t IoExit::value() const
{
	uint32_t v = 0;
	std::memcpy(&v, data.data(), std::min<size_t>(size, sizeof(v)));
	return v;
}

void IoExit::set_value(uint32_t v) const
{
	std::memcpy(data.data(), &v, std::min<size_t>(size, sizeof(v)));
}

namespace {

// The bytes of one MAP_GPA_RANGE page of attributes @attrs.
uint64_t map_gpa_page_size(uint64_t attrs)
{
	if (attrs & KVM_MAP_GPA_RANGE_PAGE_SZ_1G)
		return 1ULL << 30;
	if (attrs & KVM_MAP_GPA_RANGE_PAGE_SZ_2M)
		return 1ULL << 21;
	return 1ULL << 12;
}

VcpuExit decode(kvm_run *run)
{
	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		IoExit io;
		io.port = run->io.port;
		io.size = run->io.size;
		io.out = run->io.direction == KVM_EXIT_IO_OUT;
		io.count = run->io.count;
		io.data = { reinterpret_cast<uint8_t *>(run) + run->io.data_offset,
			    size_t(io.size) * io.count };
		return io;
	}
	case KVM_EXIT_HYPERCALL:
		if (run->hypercall.nr == KVM_HC_MAP_GPA_RANGE) {
			const uint64_t attrs = run->hypercall.args[2];
			MapGpaRangeExit m;
			m.gpa = run->hypercall.args[0];
			m.size = run->hypercall.args[1] * map_gpa_page_size(attrs);
			m.to_private = attrs & KVM_MAP_GPA_RANGE_ENCRYPTED;
			m.ret = &run->hypercall.ret;
			return m;
		} else {
			HypercallExit h;
			h.nr = run->hypercall.nr;
			std::memcpy(h.args, run->hypercall.args, sizeof(h.args));
			h.ret = &run->hypercall.ret;
			return h;
		}
	case KVM_EXIT_MEMORY_FAULT:
		return MemoryFaultExit{ run->memory_fault.gpa, run->memory_fault.size,
					(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) !=
						0 };
	case KVM_EXIT_HLT:
		return HltExit{};
	case KVM_EXIT_SHUTDOWN:
		return ShutdownExit{};
	default:
		return OtherExit{ run->exit_reason };
	}
}

std::string hex(uint64_t v)
{
	char buf[24];
	std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
	return buf;
}

} // namespace

std::string describe(const VcpuExit &exit)
{
	if (auto *io = std::get_if<IoExit>(&exit)) {
		std::string s = std::string("io ") + (io->out ? "out" : "in") + " port " +
				hex(io->port) + " size " + std::to_string(io->size);
		if (io->count != 1)
			s += " count " + std::to_string(io->count);
		if (io->out)
			s += " value " + hex(io->value());
		return s;
	}
	if (auto *h = std::get_if<HypercallExit>(&exit))
		return "hypercall " + std::to_string(h->nr) + " args " + hex(h->args[0]) + " " +
		       hex(h->args[1]) + " " + hex(h->args[2]);
	if (auto *m = std::get_if<MapGpaRangeExit>(&exit))
		return std::string("MAP_GPA_RANGE to ") + (m->to_private ? "private" : "shared") +
		       " gpa " + hex(m->gpa) + " size " + hex(m->size);
	if (auto *f = std::get_if<MemoryFaultExit>(&exit))
		return std::string("memory fault ") + (f->is_private ? "private" : "shared") +
		       " gpa " + hex(f->gpa) + " size " + hex(f->size);
	if (std::holds_alternative<HltExit>(exit))
		return "hlt";
	if (std::holds_alternative<ShutdownExit>(exit))
		return "shutdown";
	return "exit reason " + std::to_string(std::get<OtherExit>(exit).reason);
}

bool is_out(const VcpuExit &exit, uint16_t port)
{
	auto *io = std::get_if<IoExit>(&exit);
	return io && io->out && io->port == port && io->count == 1;
}

Result<VcpuExit> Vcpu::run() const
{
	kvm_run *r = run_area();
	if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
		if (errno == EFAULT && r->exit_reason == KVM_EXIT_MEMORY_FAULT)
			return decode(r);
		return fail("KVM_RUN");
	}
	return decode(r);
}

Result<kvm_regs> Vcpu::get_regs() const
{
	kvm_regs r{};
	if (::ioctl(fd_.get(), KVM_GET_REGS, &r) < 0)
		return fail("KVM_GET_REGS");
	return r;
}

Result<void> Vcpu::set_regs(const kvm_regs &regs) const
{
	return check_void(::ioctl(fd_.get(), KVM_SET_REGS, &regs), "KVM_SET_REGS");
}

Result<kvm_sregs> Vcpu::get_sregs() const
{
	kvm_sregs s{};
	if (::ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0)
		return fail("KVM_GET_SREGS");
	return s;
}

Result<void> Vcpu::set_sregs(const kvm_sregs &sregs) const
{
	return check_void(::ioctl(fd_.get(), KVM_SET_SREGS, &sregs), "KVM_SET_SREGS");
}

Result<void> GuestMemfd::allocate(uint64_t offset, uint64_t len) const
{
	return check_void(::fallocate(fd_.get(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
				      static_cast<off_t>(len)),
			  "fallocate(KEEP_SIZE)");
}

Result<void> GuestMemfd::punch_hole(uint64_t offset, uint64_t len) const
{
	return check_void(::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      static_cast<off_t>(offset), static_cast<off_t>(len)),
			  "fallocate(PUNCH_HOLE)");
}

Result<Mapping> GuestMemfd::map(uint64_t offset, uint64_t len, int prot) const
{
	return Mapping::map(fd_.get(), len, prot, MAP_SHARED, static_cast<off_t>(offset));
}

namespace {

Result<void> gmem_convert(int fd, unsigned long cmd, const char *name, uint64_t offset,
			  uint64_t len)
{
	kvm_gmem_convert args{};
	args.offset = offset;
	args.size = len;
	if (::ioctl(fd, cmd, &args) == 0)
		return {};
	SysError e = last_error(name);
	e.error_offset = args.error_offset;
	return unexpected(std::move(e));
}

} // namespace

Result<void> GuestMemfd::convert_shared(uint64_t offset, uint64_t len) const
{
	return gmem_convert(fd_.get(), KVM_GMEM_CONVERT_SHARED, "KVM_GMEM_CONVERT_SHARED", offset,
			    len);
}

Result<void> GuestMemfd::convert_private(uint64_t offset, uint64_t len) const
{
	return gmem_convert(fd_.get(), KVM_GMEM_CONVERT_PRIVATE, "KVM_GMEM_CONVERT_PRIVATE", offset,
			    len);
}

Result<void> GuestMemfd::convert(uint64_t offset, uint64_t len, bool to_private,
				 ConvertApi api) const
{
	if (api == ConvertApi::kGmemConvert)
		return to_private ? convert_private(offset, len) : convert_shared(offset, len);
	kvm_memory_attributes2 args{};
	args.offset = offset;
	args.size = len;
	args.attributes = to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
	if (::ioctl(fd_.get(), KVM_SET_MEMORY_ATTRIBUTES2, &args) == 0)
		return {};
	SysError e = last_error("KVM_SET_MEMORY_ATTRIBUTES2");
	e.error_offset = args.error_offset;
	return unexpected(std::move(e));
}

const char *convert_api_name(ConvertApi api)
{
	return api == ConvertApi::kGmemConvert ? "KVM_GMEM_CONVERT" : "KVM_SET_MEMORY_ATTRIBUTES2";
}

} // namespace gmem

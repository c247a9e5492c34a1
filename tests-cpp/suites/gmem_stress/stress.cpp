// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "stress.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "diagnostics.h"

namespace gmem::stress {

std::string Stress::describe(uint64_t p) const
{
	std::array<size_t, kIoases> domains{};
	for (int i = 0; i < kIoases; i++)
		domains[i] = domains_[i].size();
	return model_.describe(p, domains);
}

void Stress::log(int thread, const std::string &line, uint64_t first, uint64_t n)
{
	std::lock_guard l(log_mu_);
	std::ostringstream s;
	s << "#" << ++log_seq_ << " t" << thread << " " << line;
	log_.push_back(s.str());
	if (log_.size() > kLogTail)
		log_.pop_front();
	for (uint64_t p = first; p < first + n && p < kPages; p++) {
		history_[p].push_back(s.str());
		if (history_[p].size() > kPageHistory)
			history_[p].pop_front();
	}
}

void Stress::fail(const std::string &msg, std::optional<uint64_t> page)
{
	std::lock_guard l(log_mu_);
	stop_ = true;
	if (!failures_.empty()) {
		// The first failure carries the log; later ones are likely its
		// consequences.
		if (failures_.size() < 8)
			failures_.push_back("(also) " + msg);
		return;
	}
	std::ostringstream s;
	s << "model mismatch with --seed=" << opt_.seed << ": " << msg << "\noperation log tail ("
	  << log_.size() << " entries, oldest first):\n";
	for (const auto &e : log_)
		s << "  " << e << "\n";
	if (page && *page < kPages) {
		s << "operations on file page " << *page << " (oldest first):\n";
		for (const auto &e : history_[*page])
			s << "  " << e << "\n";
	}
	failures_.push_back(s.str());
	std::printf("[ FAILURE  ] %s\n", s.str().c_str());
	std::fflush(stdout);
}

void Stress::host_thread(int id)
{
	uint64_t sm = opt_.seed ^ (0x1000ULL * (id + 1));
	ThreadCtx t{ id, std::mt19937_64(splitmix64(sm)), std::make_unique<Ring>() };
	t.nth = std::make_unique<FailNth>();
	unsigned total = 0;
	for (const auto &w : kHostWeights)
		total += w.weight;
	while (!stopping() && Clock::now() < deadline_ && total_ops_ < opt_.max_ops) {
		unsigned x = static_cast<unsigned>(t.rand(total));
		Op op = kHostWeights[0].op;
		for (const auto &w : kHostWeights) {
			if (x < w.weight) {
				op = w.op;
				break;
			}
			x -= w.weight;
		}
		if (op != kMapFile && op != kAttach && !enabled(op))
			continue;
		GateGuard g(gate_);
		doing_[id] = kOpNames[op];
		Op done = op;
		bool did = false;
		switch (op) {
		case kToShared:
		case kToPrivate:
			did = op_convert(t, op == kToPrivate);
			break;
		case kHostRead:
		case kHostWrite:
			did = op_host_access(t, op == kHostWrite);
			break;
		case kPunch:
			did = op_fallocate(t, true, false);
			break;
		case kFallocate:
			did = op_fallocate(t, false, false);
			break;
		case kUringFallocate:
			did = op_fallocate(t, t.rand(2), true);
			break;
		case kHwPoison:
			did = op_hwpoison(t);
			break;
		case kMapFile:
			did = op_area(t, done);
			break;
		case kAttach:
			did = op_domain(t, done);
			break;
		case kFork:
			did = op_fork(t);
			break;
		case kPinToPrivate:
			did = op_pin_to_private(t);
			break;
		case kDmaRead:
			did = op_dma_read(t);
			break;
		case kReclaim:
			did = op_reclaim(t);
			break;
		case kFailNth:
			did = op_fail_nth(t);
			break;
		default:
			break;
		}
		doing_[id] = "between ops";
		if (did)
			count(done);
	}
}

bool setup_fault_injection()
{
	auto put = [](const std::string &file, const char *v) {
		UniqueFd f(::open(("/sys/kernel/debug/" + file).c_str(), O_WRONLY | O_CLOEXEC));
		return f.valid() && ::write(f.get(), v, std::strlen(v)) > 0;
	};
	if (!put("failslab/ignore-gfp-wait", "N"))
		return false;
	put("fail_page_alloc/ignore-gfp-wait", "N");
	put("fail_page_alloc/ignore-gfp-highmem", "N");
	for (const char *d :
	     { "failslab", "fail_page_alloc", "fail_iommufd", "fail_usercopy", "fail_futex" })
		put(std::string(d) + "/verbose", "0");
	return true;
}

std::string Stress::setup()
{
	if (const std::string &why = ConvertibleGuest::unsupported(); !why.empty())
		return why;
	auto iommufd = Iommufd::open();
	if (!iommufd)
		return iommufd.error().message();
	iommufd_.emplace(std::move(iommufd).value());
	if (!have_iommufd_mock(iommufd_->fd()))
		return "no iommufd mock domains (CONFIG_IOMMUFD_TEST)";

	vmrun_text_ = symbol_range("__svm_vcpu_run");
	// run_vcpu() interrupts a long KVM_RUN with SIGUSR1: it needs to
	// return EINTR, not to kill the process.
	struct sigaction sa {};
	sa.sa_handler = [](int) {};
	::sigaction(SIGUSR1, &sa, nullptr);
	uint64_t sm = opt_.seed;
	std::mt19937_64 rng(splitmix64(sm));
	const bool init_shared = rng() & 1;
	GuestConfig config = mailbox_guest_config(kFileSize);
	if (init_shared)
		config.gmem_flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
	guest_.emplace(ConvertibleGuest::create(config).value());
	for (auto &p : model_.pages)
		p.shared = init_shared;
	for (int v = 0; v < kVcpus; v++) {
		const unsigned id = guest_->add_vcpu().value();
		sregs0_.push_back(guest_->vcpu(id).get_sregs().value());
		regs0_.push_back(guest_->vcpu(id).get_regs().value());
	}

	// IOAS 0 maps every chunk, IOAS 1 some; each has one or two domains,
	// attached before or after the mapping.
	for (int i = 0; i < kIoases; i++) {
		ioas_.push_back(iommufd_->alloc_ioas().value());
		if (errno_of(ioas_[i].mirror_status(kIovaBase[i])) == ENOTTY)
			return "no IOMMU_IOAS_MIRROR_STATUS in this kernel";
		access_.push_back(MockAccess::create(ioas_[i]).value());
	}
	for (int i = 0; i < kIoases; i++) {
		const size_t ndom = 1 + (rng() >> 33) % kMaxDomains;
		const bool after = (rng() >> 40) & 1;
		if (!after)
			for (size_t d = 0; d < ndom; d++)
				domains_[i].push_back(MockDomain::attach(ioas_[i]).value());
		for (uint64_t c = 0; c < kChunks; c++) {
			if (i > 0 && !(rng() & 1))
				continue;
			if (!opt_.map_fill)
				again_on_eintr([&] {
					return gmem().allocate(c * kChunkSize, kChunkSize);
				}).value();
			ioas_[i].map_file(gmem().fd(), c * kChunkSize, kChunkSize,
					  iova(i, c * kChunkPages))
				.value();
			model_.covered[i][c] = true;
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				if (model_.pages[p].shared || !opt_.map_fill)
					model_.pages[p].allocated = true;
		}
		if (after)
			for (size_t d = 0; d < ndom; d++)
				domains_[i].push_back(MockDomain::attach(ioas_[i]).value());
	}
	std::printf("[ STRESS   ] file of %llu pages, %s; IOAS 0: %zu domains, IOAS 1: %zu "
		    "domains\n",
		    (unsigned long long)kPages, init_shared ? "INIT_SHARED" : "private",
		    domains_[0].size(), domains_[1].size());
	if (!setup_fault_injection()) {
		fault_injection_ = false;
		std::printf("[ NOTE     ] no failslab in debugfs: fail_nth disabled\n");
	}
	std::fflush(stdout);
	return {};
}

void Stress::run()
{
	const auto start = Clock::now();
	deadline_ = start + std::chrono::milliseconds(static_cast<int64_t>(opt_.seconds * 1000));
	last_progress_ = Clock::now().time_since_epoch().count();
	full_check("after setup");
	std::vector<std::thread> threads;
	for (int i = 0; i < kHostThreads; i++)
		threads.emplace_back([this, i] { host_thread(i); });
	// --disable=guest_read,guest_write: the host's actors alone (the
	// vCPUs are created, never run).
	if (enabled(kGuestRead) || enabled(kGuestWrite))
		for (int v = 0; v < kVcpus; v++)
			threads.emplace_back([this, v] { vcpu_thread(v); });

	// Quiesce every check_ms: close the gate, check everything, reopen.
	while (!stopping() && Clock::now() < deadline_ && total_ops_ < opt_.max_ops) {
		std::this_thread::sleep_for(std::chrono::milliseconds(opt_.check_ms));
		if (!gate_.close(std::chrono::seconds(120))) {
			std::string doing;
			for (size_t i = 0; i < doing_.size(); i++) {
				const char *d = doing_[i];
				doing += " t" + std::to_string(i) + ": " + (d ? d : "starting") +
					 ";";
			}
			fail("no operation finished within 120 s (a deadlock?); threads:" + doing +
			     " kernel stacks follow");
			print_thread_stacks();
			print_kvm_trace();
			std::fflush(stdout);
			std::_Exit(1);
		}
		full_check("at quiesce point " + std::to_string(quiesce_checks_.load() + 1) +
			   " after " + std::to_string(total_ops_.load()) + " operations");
		gate_.open();
	}
	stop_ = true;
	for (auto &th : threads)
		th.join();
	if (failures_.empty())
		full_check("at the end");
}

void Stress::print_summary(double seconds) const
{
	std::printf("[ STRESS   ] seed %llu: %llu operations in %.1f s, %llu quiesce checks, "
		    "%llu expected errors, %d pages poisoned\n",
		    (unsigned long long)opt_.seed, (unsigned long long)total_ops_.load(), seconds,
		    (unsigned long long)quiesce_checks_.load(),
		    (unsigned long long)expected_errors_.load(), poisoned_.load());
	std::printf("[ STRESS   ] guest accesses racing a conversion of their page: %llu "
		    "(KVM_EXIT_MEMORY_FAULT retried: %llu)\n",
		    (unsigned long long)racing_conversions_.load(),
		    (unsigned long long)memory_fault_retries_.load());
	std::printf("[ STRESS   ] vCPU state replaced by the host's and started over "
		    "(KERNEL-BUGS.md, 6): %llu (at most %llu, --max-vcpu-restarts)\n",
		    (unsigned long long)vcpu_state_lost_.load(),
		    (unsigned long long)opt_.max_vcpu_restarts);
	std::printf("[ STRESS   ] IOAS 1 left without a domain: %llu times; injected failures "
		    "that failed an operation: %llu\n",
		    (unsigned long long)domainless_.load(),
		    (unsigned long long)injected_failures_.load());
	std::printf("[ STRESS   ] fallocate()s retried after EINTR without a signal: %llu\n",
		    (unsigned long long)eintr_retries.load());
	for (int i = 0; i < kOpCount; i++)
		std::printf("[ STRESS   ]   %-16s %8llu%s\n", kOpNames[i],
			    (unsigned long long)counts_[i].load(),
			    opt_.disabled[i] ? "  (disabled)" : "");
	std::fflush(stdout);
}

} // namespace gmem::stress

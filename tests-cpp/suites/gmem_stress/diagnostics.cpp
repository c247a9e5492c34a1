// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "diagnostics.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "gmem/fd.h"

namespace gmem::stress {

std::string slurp(const std::filesystem::path &p)
{
	std::ifstream f(p);
	return std::string(std::istreambuf_iterator<char>(f), {});
}

std::pair<uint64_t, uint64_t> symbol_range(const std::string &name)
{
	std::ifstream f("/proc/kallsyms");
	std::vector<uint64_t> addrs;
	uint64_t start = 0;
	std::string line;
	while (std::getline(f, line)) {
		std::istringstream in(line);
		std::string addr, type, sym;
		if (!(in >> addr >> type >> sym) || (type != "t" && type != "T"))
			continue;
		const uint64_t a = std::stoull(addr, nullptr, 16);
		addrs.push_back(a);
		if (sym == name)
			start = a;
	}
	if (!start)
		return { 0, 0 };
	uint64_t end = UINT64_MAX;
	for (uint64_t a : addrs)
		if (a > start && a < end)
			end = a;
	return { start, end };
}

void print_kvm_trace()
{
	const std::string t = "/sys/kernel/tracing/";
	auto put = [&](const std::string &file, const char *v) {
		UniqueFd f(::open((t + file).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
		return f.valid() && ::write(f.get(), v, std::strlen(v)) > 0;
	};
	if (UniqueFd clear(::open((t + "trace").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
	    !clear.valid() || !put("events/kvm/enable", "1")) {
		std::printf("[ TRACE    ] no KVM tracepoints in %s\n", t.c_str());
		return;
	}
	put("events/kvmmmu/enable", "1");
	std::this_thread::sleep_for(std::chrono::seconds(1));
	put("events/kvm/enable", "0");
	put("events/kvmmmu/enable", "0");
	std::ifstream f(t + "trace");
	std::string line;
	for (int n = 0; n < 120 && std::getline(f, line);)
		if (line.empty() || line[0] != '#') {
			std::printf("[ TRACE    ] %s\n", line.c_str());
			n++;
		}
}

std::string kvm_exit_summary(int vcpu_id, const std::function<void()> &run)
{
	const std::string t = "/sys/kernel/tracing/";
	auto put = [&](const std::string &file, const char *v) {
		UniqueFd f(::open((t + file).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
		return f.valid() && ::write(f.get(), v, std::strlen(v)) > 0;
	};
	if (UniqueFd clear(::open((t + "trace").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
	    !clear.valid() || !put("events/kvm/kvm_exit/enable", "1"))
		return "no KVM tracepoints in " + t;
	put("events/kvm/kvm_inj_exception/enable", "1");
	run();
	put("events/kvm/kvm_exit/enable", "0");
	put("events/kvm/kvm_inj_exception/enable", "0");
	// "kvm_exit: vcpu 0 reason npf rip 0x... info1 ...": the event, the
	// reason and the RIP; "kvm_inj_exception: #GP (0x0)": the event and
	// the vector. Lines of other vCPUs are left out.
	std::map<std::string, unsigned> seen;
	std::ifstream f(t + "trace");
	std::string line;
	const std::string me = "vcpu " + std::to_string(vcpu_id) + " ";
	while (std::getline(f, line)) {
		if (line.empty() || line[0] == '#')
			continue;
		if (size_t e = line.find("kvm_exit: "); e != std::string::npos) {
			if (line.find(me, e) == std::string::npos)
				continue;
			const size_t r = line.find("reason ", e);
			const size_t i = line.find(" info1", e);
			seen["exit " + line.substr(r, i == std::string::npos ? i : i - r)]++;
		} else if (size_t x = line.find("kvm_inj_exception: "); x != std::string::npos) {
			seen["injected " + line.substr(x + 19)]++;
		}
	}
	if (seen.empty())
		return "no exit of vCPU " + std::to_string(vcpu_id);
	std::vector<std::pair<unsigned, std::string>> by_count;
	for (const auto &[what, n] : seen)
		by_count.emplace_back(n, what);
	std::sort(by_count.rbegin(), by_count.rend());
	std::string out;
	for (size_t i = 0; i < by_count.size() && i < 4; i++)
		out += (i ? "; " : "") + by_count[i].second + " (x" +
		       std::to_string(by_count[i].first) + ")";
	return out;
}

namespace {

// The fields of a thread's stat after its comm: [0] is field 3 (state) of
// proc_pid_stat(5), [n - 3] field n.
std::vector<std::string> stat_fields(const std::filesystem::path &task)
{
	const std::string stat = slurp(task / "stat");
	const size_t paren = stat.rfind(") ");
	if (paren == std::string::npos)
		return {};
	std::istringstream in(stat.substr(paren + 2));
	return { std::istream_iterator<std::string>(in), {} };
}

// utime, stime and guest_time (fields 14, 15, 43) in clock ticks.
std::array<unsigned long long, 3> thread_times(const std::filesystem::path &task)
{
	const auto f = stat_fields(task);
	if (f.size() <= 40)
		return {};
	return { std::stoull(f[11]), std::stoull(f[12]), std::stoull(f[40]) };
}

} // namespace

void print_thread_stacks()
{
	const std::filesystem::path tasks = "/proc/self/task";
	std::vector<std::filesystem::path> running;
	std::error_code ec;
	for (const auto &e : std::filesystem::directory_iterator(tasks, ec)) {
		std::string comm = slurp(e.path() / "comm");
		if (!comm.empty() && comm.back() == '\n')
			comm.pop_back();
		const auto f = stat_fields(e.path());
		const char state = f.empty() ? '?' : f[0][0];
		std::printf("[ STACK    ] thread %s (%s) state %c wchan %s\n%s",
			    e.path().filename().c_str(), comm.c_str(), state,
			    slurp(e.path() / "wchan").c_str(), slurp(e.path() / "stack").c_str());
		if (state == 'R' && e.path().filename() != std::to_string(::gettid()))
			running.push_back(e.path());
	}
	// A thread on a CPU shows no stack: where its time goes over a second
	// (user, system, or a guest's), and its stack whenever it is off the CPU.
	for (const auto &p : running) {
		const auto t0 = thread_times(p);
		std::string seen;
		for (int i = 0; i < 20; i++) {
			std::string st = slurp(p / "stack");
			if (!st.empty() && seen.find(st) == std::string::npos)
				seen += st + "--\n";
			std::this_thread::sleep_for(std::chrono::milliseconds(50));
		}
		const auto t1 = thread_times(p);
		std::printf(
			"[ STACK    ] running thread %s over 1 s: user %llu, system %llu, guest "
			"%llu ticks; syscall %s; stacks seen off the CPU:\n%s",
			p.filename().c_str(), t1[0] - t0[0], t1[1] - t0[1], t1[2] - t0[2],
			slurp(p / "syscall").c_str(), seen.c_str());
	}
}

} // namespace gmem::stress

// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "options.h"

#include <cstdlib>
#include <optional>
#include <random>
#include <sstream>
#include <vector>

#include "diagnostics.h"

namespace gmem::stress {

namespace {

std::vector<std::string> command_line()
{
	const std::string all = slurp("/proc/self/cmdline");
	std::vector<std::string> args;
	std::string cur;
	for (char c : all) {
		if (c == '\0') {
			args.push_back(cur);
			cur.clear();
		} else {
			cur += c;
		}
	}
	return args;
}

// --name=value on the command line, else the environment variable.
std::optional<std::string> option(const std::vector<std::string> &args, const std::string &name,
				  const char *env)
{
	const std::string prefix = "--" + name + "=";
	for (const auto &a : args)
		if (a.rfind(prefix, 0) == 0)
			return a.substr(prefix.size());
	if (const char *v = std::getenv(env))
		return std::string(v);
	return std::nullopt;
}

} // namespace

std::string parse_options(Options &o)
{
	const auto args = command_line();
	if (auto v = option(args, "seed", "GMEM_STRESS_SEED"))
		o.seed = std::stoull(*v, nullptr, 0);
	else
		o.seed = std::random_device{}() ^
			 (static_cast<uint64_t>(std::random_device{}()) << 32);
	if (auto v = option(args, "seconds", "GMEM_STRESS_SECONDS"))
		o.seconds = std::stod(*v);
	if (auto v = option(args, "max-ops", "GMEM_STRESS_OPS"))
		o.max_ops = std::stoull(*v, nullptr, 0);
	if (auto v = option(args, "check-ms", "GMEM_STRESS_CHECK_MS"))
		o.check_ms = static_cast<unsigned>(std::stoul(*v));
	if (auto v = option(args, "max-vcpu-restarts", "GMEM_STRESS_MAX_VCPU_RESTARTS"))
		o.max_vcpu_restarts = std::stoull(*v, nullptr, 0);
	if (auto v = option(args, "vcpu-stuck-s", "GMEM_STRESS_VCPU_STUCK_S"))
		o.vcpu_stuck_s = std::stod(*v);
	if (auto v = option(args, "disable", "GMEM_STRESS_DISABLE")) {
		std::stringstream ss(*v);
		std::string kind;
		while (std::getline(ss, kind, ',')) {
			if (kind.empty())
				continue;
			if (kind == "guest_fill") {
				o.guest_fill = false;
			} else if (kind == "map_fill") {
				o.map_fill = false;
			} else {
				int i = 0;
				while (i < kOpCount && kind != kOpNames[i])
					i++;
				if (i == kOpCount)
					return "unknown op kind in --disable: " + kind;
				o.disabled[i] = true;
			}
			o.disabled_list += (o.disabled_list.empty() ? "" : ",") + kind;
		}
	}
	return {};
}

} // namespace gmem::stress

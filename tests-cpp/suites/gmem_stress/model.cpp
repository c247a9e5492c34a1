// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "model.h"

#include <sstream>

namespace gmem::stress {

bool Model::covered_any(uint64_t page) const
{
	for (int i = 0; i < kIoases; i++)
		if (covers(i, page))
			return true;
	return false;
}

std::string Model::describe(uint64_t p, const std::array<size_t, kIoases> &domains) const
{
	const PageModel &m = pages[p];
	std::ostringstream s;
	s << "file page " << p << " (GPA 0x" << std::hex << kDataGpa + p * kPage << std::dec
	  << ", chunk " << p / kChunkPages << "): model " << (m.shared ? "shared" : "private")
	  << (m.allocated ? ", allocated" : ", hole") << (m.poisoned ? ", poisoned" : "")
	  << ", token 0x" << std::hex << m.token << std::dec << "; mapped by IOAS";
	bool any = false;
	for (int i = 0; i < kIoases; i++)
		if (covers(i, p)) {
			s << " " << i << " (" << domains[i] << " domains, IOVA 0x" << std::hex
			  << iova(i, p) << std::dec << ")";
			any = true;
		}
	if (!any)
		s << " none";
	return s.str();
}

} // namespace gmem::stress

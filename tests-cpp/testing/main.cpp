// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// main() of every suite: GoogleTest with its XML report next to the binary
// (the guest's run directory), which the harness turns into per-case
// results.
#include <gtest/gtest.h>

#include <string>

int main(int argc, char **argv)
{
	// The default must be in place before InitGoogleTest() sets up the
	// XML printer; --gtest_output on the command line still wins.
	testing::GTEST_FLAG(output) = "xml:" + std::string(argv[0]) + ".xml";
	testing::InitGoogleTest(&argc, argv);
	return RUN_ALL_TESTS();
}

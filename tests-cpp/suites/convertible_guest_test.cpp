// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The VMM layer every other program builds on: ConvertibleGuest running
// the mailbox guest. Each mailbox command does what gmem/mailbox.h says,
// seen from the host through the guest_memfd's mapping; MAP_GPA_RANGE is
// converted in place by default (same page, same contents) or handed to
// the caller, decoded; vCPUs keep to their own mailboxes; the exits are
// decoded as KVM reported them.
#include <asm/kvm_para.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>

#include <cstring>
#include <string>
#include <variant>

#include "gmem/guest.h"
#include "gmem/layout.h"
#include "gmem/mailbox_guest.h"
#include "mock/host_access.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::FailsWithErrno;
using ::gmem::testing::host_touch;
using ::gmem::testing::Succeeds;
using layout::kPage;

constexpr uint64_t kPages = 16;
constexpr uint32_t kGpa = layout::kDataGpa;

uint32_t gpa_of(uint64_t page, uint64_t byte = 0)
{
	return uint32_t(kGpa + page * kPage + byte);
}

class ConvertibleGuestTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (const std::string &why = ConvertibleGuest::unsupported(); !why.empty())
			GTEST_SKIP() << why;
		ASSERT_NO_FATAL_FAILURE(Create(mailbox_guest_config(kPages * kPage)));
	}

	void Create(const GuestConfig &config)
	{
		guest_.reset();
		auto g = ConvertibleGuest::create(config);
		ASSERT_THAT(g, Succeeds());
		guest_.emplace(std::move(g).value());
		ASSERT_THAT(guest_->add_vcpu(), Succeeds());
	}

	MailboxReply Exec(const MailboxCommand &c, unsigned v = 0)
	{
		auto r = mailbox_exec(*guest_, v, c);
		EXPECT_THAT(r, Succeeds());
		return r.value_or(MailboxReply{});
	}

	uint32_t HostWord(uint64_t page, uint64_t byte = 0) const
	{
		uint32_t w;
		std::memcpy(&w, guest_->data() + page * kPage + byte, sizeof(w));
		return w;
	}

	bool HostSees(uint64_t page) const { return host_touch(guest_->data() + page * kPage); }

	std::optional<ConvertibleGuest> guest_;
};

// Every command reports itself done with an "out" of its code to the done
// port, and counts itself in the mailbox.
TEST_F(ConvertibleGuestTest, EachCommandEndsWithItsDoneExit)
{
	const uint32_t before = mailbox(*guest_, 0).done;
	auto exit = mailbox_post(*guest_, 0, { MailboxCmd::kWrite, gpa_of(0), 0, 7, 0 });
	ASSERT_THAT(exit, Succeeds());
	const auto *io = std::get_if<IoExit>(&*exit);
	ASSERT_NE(io, nullptr) << describe(*exit);
	EXPECT_TRUE(io->out);
	EXPECT_EQ(io->port, layout::kDonePort);
	EXPECT_EQ(io->size, 1);
	EXPECT_EQ(io->count, 1u);
	EXPECT_EQ(io->value(), uint32_t(MailboxCmd::kWrite));
	EXPECT_EQ(mailbox(*guest_, 0).done, before + 1);
	EXPECT_EQ(describe(*exit), "io out port 0xe0 size 1 value 0x2");
}

// The guest's private writes stay private: the host cannot see them, the
// guest reads them back.
TEST_F(ConvertibleGuestTest, ReadAndWriteOfPrivatePages)
{
	Exec({ MailboxCmd::kWrite, gpa_of(1), 0, 0x11223344, kPage - 4 });
	const MailboxReply r = Exec({ MailboxCmd::kRead, gpa_of(1), 0, 0, kPage - 4 });
	EXPECT_EQ(r.out0, 0x11223344u);
	EXPECT_EQ(r.out1, 0x11223344u);
	EXPECT_FALSE(HostSees(1)) << "a private page must not be reachable from the host";
}

// FILL writes exactly count dwords; TOUCH_WRITE and TOUCH_READ touch the
// first dword of each page. Checked from the host once the pages are
// shared (in place: the contents stay).
TEST_F(ConvertibleGuestTest, FillAndTouchWriteWhatTheySay)
{
	Exec({ MailboxCmd::kFill, gpa_of(2, 8), 5, 0xabcdef01 });
	Exec({ MailboxCmd::kTouchWrite, gpa_of(4), 3, 0x5eed0000 });
	ASSERT_THAT(guest_->convert(0, kPages * kPage, false), Succeeds());
	EXPECT_EQ(HostWord(2, 4), 0u);
	for (uint64_t b = 8; b < 8 + 5 * 4; b += 4)
		EXPECT_EQ(HostWord(2, b), 0xabcdef01u) << "byte " << b;
	EXPECT_EQ(HostWord(2, 8 + 5 * 4), 0u) << "FILL wrote past its count";
	for (uint64_t p = 4; p < 7; p++) {
		EXPECT_EQ(HostWord(p), 0x5eed0000u) << "page " << p;
		EXPECT_EQ(HostWord(p, 4), 0u) << "page " << p;
	}
	EXPECT_EQ(HostWord(7), 0u) << "TOUCH_WRITE went past its count";

	std::memcpy(guest_->data() + 9 * kPage, "\x44\x33\x22\x11", 4);
	EXPECT_EQ(Exec({ MailboxCmd::kTouchRead, gpa_of(7), 3 }).out0, 0x11223344u);
}

// MAP_GPA_RANGE, answered by the class: an in-place conversion of exactly
// the range, both ways, with the contents kept, counted in its stats.
TEST_F(ConvertibleGuestTest, MapGpaRangeConvertsInPlace)
{
	Exec({ MailboxCmd::kFill, gpa_of(3), 2 * kPage / 4, 0x50525631 });
	MailboxReply r = Exec({ MailboxCmd::kMapGpa, gpa_of(3), 2, 0 });
	EXPECT_EQ(r.ret, 0u);
	EXPECT_FALSE(HostSees(2));
	EXPECT_TRUE(HostSees(3));
	EXPECT_TRUE(HostSees(4));
	EXPECT_FALSE(HostSees(5));
	EXPECT_EQ(HostWord(4, kPage - 4), 0x50525631u) << "the guest's data did not stay";
	EXPECT_EQ(guest_->stats().map_gpa_exits.load(), 1u);
	EXPECT_EQ(guest_->stats().to_shared_pages.load(), 2u);

	std::memcpy(guest_->data() + 3 * kPage, "VMM!", 4);
	r = Exec({ MailboxCmd::kMapGpa, gpa_of(3), 1, uint32_t(KVM_MAP_GPA_RANGE_ENCRYPTED) });
	EXPECT_EQ(r.ret, 0u);
	EXPECT_FALSE(HostSees(3));
	EXPECT_TRUE(HostSees(4));
	EXPECT_EQ(Exec({ MailboxCmd::kRead, gpa_of(3) }).out0, 0x214d4d56u /* "VMM!" */)
		<< "the page the guest took back is not the page the host wrote";
	EXPECT_EQ(guest_->stats().to_private_pages.load(), 1u);
}

// A range outside the data slot is refused to the guest, and converts
// nothing.
TEST_F(ConvertibleGuestTest, MapGpaRangeOutsideTheSlotIsRefused)
{
	MailboxReply r = Exec({ MailboxCmd::kMapGpa, uint32_t(layout::kCodeGpa), 1, 0 });
	EXPECT_EQ(int32_t(r.ret), -KVM_EINVAL);
	r = Exec({ MailboxCmd::kMapGpa, gpa_of(kPages - 1), 2, 0 });
	EXPECT_EQ(int32_t(r.ret), -KVM_EINVAL);
	EXPECT_EQ(guest_->stats().map_gpa_exits.load(), 2u);
	EXPECT_EQ(guest_->stats().to_shared_pages.load(), 0u);
	EXPECT_FALSE(HostSees(kPages - 1));
}

// With handle_map_gpa off, the exit comes to the caller decoded (GPA,
// bytes, direction), and the caller's answer reaches the guest.
TEST_F(ConvertibleGuestTest, CallerCanAnswerMapGpaRange)
{
	GuestConfig config = mailbox_guest_config(kPages * kPage);
	config.handle_map_gpa = false;
	ASSERT_NO_FATAL_FAILURE(Create(config));
	auto exit = mailbox_post(
		*guest_, 0,
		{ MailboxCmd::kMapGpa, gpa_of(6), 3, uint32_t(KVM_MAP_GPA_RANGE_ENCRYPTED) });
	ASSERT_THAT(exit, Succeeds());
	const auto *m = std::get_if<MapGpaRangeExit>(&*exit);
	ASSERT_NE(m, nullptr) << describe(*exit);
	EXPECT_EQ(m->gpa, gpa_of(6));
	EXPECT_EQ(m->size, 3 * kPage);
	EXPECT_TRUE(m->to_private);
	*m->ret = 0x1234;
	exit = mailbox_resume(*guest_, 0);
	ASSERT_THAT(exit, Succeeds());
	EXPECT_TRUE(mailbox_done(*exit, MailboxCmd::kMapGpa)) << describe(*exit);
	EXPECT_EQ(mailbox(*guest_, 0).ret, 0x1234u);
	EXPECT_EQ(guest_->stats().map_gpa_exits.load(), 0u);
}

// convert() is all or nothing and names the failure; EAGAIN is retried as
// the policy says (a pin here makes every try fail).
TEST_F(ConvertibleGuestTest, ConvertRefusesBadRangesAndRetriesEagain)
{
	EXPECT_THAT(guest_->convert(kPage / 2, kPage, false), FailsWithErrno(EINVAL));
	EXPECT_THAT(guest_->convert(0, (kPages + 1) * kPage, false), FailsWithErrno(EINVAL));
	EXPECT_EQ(guest_->stats().failures.load(), 2u);
	EXPECT_EQ(guest_->stats().retries.load(), 0u);

	GuestConfig config = mailbox_guest_config(kPages * kPage);
	config.retry = { 3, std::chrono::microseconds(10) };
	ASSERT_NO_FATAL_FAILURE(Create(config));
	ASSERT_THAT(guest_->convert(0, kPages * kPage, false), Succeeds());
	int p[2];
	ASSERT_THAT(::pipe(p), ::gmem::testing::SyscallSucceeds());
	UniqueFd rd(p[0]), wr(p[1]);
	iovec iov{ guest_->data() + 5 * kPage, kPage };
	ASSERT_THAT(::vmsplice(wr.get(), &iov, 1, 0),
		    ::gmem::testing::SyscallSucceedsWithValue(kPage));
	auto r = guest_->convert(4 * kPage, 2 * kPage, true);
	ASSERT_THAT(r, FailsWithErrno(EAGAIN));
	EXPECT_EQ(r.error().error_offset.value_or(~0ULL), 5 * kPage);
	EXPECT_EQ(guest_->stats().retries.load(), 2u) << "3 attempts: 2 retries";
	EXPECT_TRUE(HostSees(4)) << "a refused conversion changed a page";
}

// Each vCPU has its own mailbox: commands on one do not disturb another's.
TEST_F(ConvertibleGuestTest, VcpusKeepToTheirOwnMailboxes)
{
	auto v1 = guest_->add_vcpu();
	ASSERT_THAT(v1, Succeeds());
	ASSERT_EQ(*v1, 1u);
	Exec({ MailboxCmd::kWrite, gpa_of(8), 0, 0xa0a0a0a0 }, 0);
	Exec({ MailboxCmd::kWrite, gpa_of(9), 0, 0xb1b1b1b1 }, 1);
	EXPECT_EQ(Exec({ MailboxCmd::kRead, gpa_of(9) }, 0).out0, 0xb1b1b1b1u);
	EXPECT_EQ(Exec({ MailboxCmd::kRead, gpa_of(8) }, 1).out0, 0xa0a0a0a0u);
	EXPECT_EQ(mailbox(*guest_, 0).done, 2u);
	EXPECT_EQ(mailbox(*guest_, 1).done, 2u);
	EXPECT_NE(&mailbox(*guest_, 0), &mailbox(*guest_, 1));
}

// HALT is KVM_EXIT_HLT, decoded; the guest takes the next command after it.
TEST_F(ConvertibleGuestTest, HaltIsAnHltExit)
{
	auto exit = mailbox_post(*guest_, 0, { MailboxCmd::kHalt });
	ASSERT_THAT(exit, Succeeds());
	EXPECT_TRUE(std::holds_alternative<HltExit>(*exit)) << describe(*exit);
	EXPECT_EQ(describe(*exit), "hlt");
	EXPECT_EQ(Exec({ MailboxCmd::kWrite, gpa_of(0), 0, 1 }).ret, 0u);
}

} // namespace
} // namespace gmem

// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "gmem/mailbox_guest.h"

extern "C" const uint8_t gmem_mailbox_guest_start[], gmem_mailbox_guest_end[];

namespace gmem {

std::span<const uint8_t> mailbox_guest_code()
{
	return { gmem_mailbox_guest_start, gmem_mailbox_guest_end };
}

GuestConfig mailbox_guest_config(uint64_t data_size)
{
	GuestConfig c;
	c.code = mailbox_guest_code();
	c.data_size = data_size;
	return c;
}

Mailbox &mailbox(const ConvertibleGuest &g, unsigned v)
{
	return *reinterpret_cast<Mailbox *>(g.code() + layout::mailbox_gpa(v) - layout::kCodeGpa);
}

bool mailbox_done(const VcpuExit &exit, MailboxCmd cmd)
{
	if (cmd == MailboxCmd::kHalt)
		return std::holds_alternative<HltExit>(exit);
	return is_out(exit, layout::kDonePort);
}

Result<VcpuExit> mailbox_resume(ConvertibleGuest &g, unsigned v)
{
	return g.run(v);
}

Result<VcpuExit> mailbox_post(ConvertibleGuest &g, unsigned v, const MailboxCommand &c)
{
	Mailbox &mb = mailbox(g, v);
	mb.cmd = c.cmd;
	mb.gpa = c.gpa;
	mb.count = c.count;
	mb.value = c.value;
	mb.offset = c.offset;
	mb.out0 = mb.out1 = mb.ret = 0;
	return g.run(v);
}

Result<MailboxReply> mailbox_exec(ConvertibleGuest &g, unsigned v, const MailboxCommand &c)
{
	const uint32_t done = mailbox(g, v).done;
	auto exit = mailbox_post(g, v, c);
	if (!exit)
		return unexpected(exit.error());
	const Mailbox &mb = mailbox(g, v);
	if (!mailbox_done(*exit, c.cmd) || (c.cmd != MailboxCmd::kHalt && mb.done != done + 1))
		return fail(EPROTO, "mailbox command " + std::to_string(uint32_t(c.cmd)) +
					    " on vCPU " + std::to_string(v) +
					    " ended with: " + describe(*exit));
	return MailboxReply{ mb.out0, mb.out1, mb.ret };
}

} // namespace gmem

// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The VMM side of the mailbox guest (gmem/mailbox.h): its code for a
// ConvertibleGuest, each vCPU's mailbox, and one command run to its end.
//
//	auto g = ConvertibleGuest::create(mailbox_guest_config(size)).value();
//	unsigned v = g.add_vcpu().value();
//	mailbox_exec(g, v, { MailboxCmd::kFill, gpa, dwords, value }).value();
//	auto r = mailbox_exec(g, v, { MailboxCmd::kRead, gpa }).value();
#pragma once

#include <cstdint>
#include <span>

#include "gmem/guest.h"
#include "gmem/mailbox.h"
#include "gmem/result.h"

namespace gmem {

// The mailbox guest's code.
std::span<const uint8_t> mailbox_guest_code();

// A GuestConfig that runs the mailbox guest with a data slot of
// @data_size bytes at GMEM_DATA_GPA.
GuestConfig mailbox_guest_config(uint64_t data_size);

// vCPU @v's mailbox. Valid while the guest lives; touch it only while
// the vCPU is not running.
Mailbox &mailbox(const ConvertibleGuest &g, unsigned v);

// One command (see gmem/mailbox.h for what each field means to it).
struct MailboxCommand {
	MailboxCmd cmd = MailboxCmd::kHalt;
	uint32_t gpa = 0;
	uint32_t count = 0;
	uint32_t value = 0;
	uint32_t offset = 0;
};

// What the guest wrote back.
struct MailboxReply {
	uint32_t out0 = 0;
	uint32_t out1 = 0;
	uint32_t ret = 0;
};

// Writes @c into vCPU @v's mailbox and runs the vCPU (MAP_GPA_RANGE
// answered as the guest's config says) until the guest reports it done,
// or until any other exit, which it returns: a memory fault, say, that
// the caller resolves before it calls mailbox_resume().
Result<VcpuExit> mailbox_post(ConvertibleGuest &g, unsigned v, const MailboxCommand &c);
// Runs vCPU @v on with the command it has (after an exit that was not the
// end of it), as mailbox_post() does.
Result<VcpuExit> mailbox_resume(ConvertibleGuest &g, unsigned v);
// True if @exit is the guest reporting a command done (for kHalt: the
// HLT).
bool mailbox_done(const VcpuExit &exit, MailboxCmd cmd);

// mailbox_post() that must end with the command done: the reply, or an
// error (EPROTO) naming the exit that got in the way.
Result<MailboxReply> mailbox_exec(ConvertibleGuest &g, unsigned v, const MailboxCommand &c);

} // namespace gmem

/* SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause */
/*
 * The guest of gmem-bench's touch case: 32-bit protected mode, flat
 * segments, no paging. The host starts the vCPU at the copy of
 * bench_guest_start with ESI = the GPA of a mailbox and, before each
 * KVM_RUN, writes one request there:
 *
 *   +0  GPA of the first page
 *   +4  number of pages
 *   +8  op: 0 read, 1 write
 *
 * The guest reads (or writes) the first word of every page in turn, then
 * does an "out" to DONE_PORT: one KVM_RUN is one pass over the range, so
 * its cost is the guest's first touch of each page (its NPT faults).
 */
#define DONE_PORT	0xe0

	.section .rodata
	.globl bench_guest_start, bench_guest_end
	.code32
bench_guest_start:
1:	mov	0(%esi), %ebx
	mov	4(%esi), %ecx
	mov	8(%esi), %eax
	test	%ecx, %ecx
	jz	4f
	cmp	$1, %eax
	je	3f
2:	mov	(%ebx), %edx
	add	$4096, %ebx
	dec	%ecx
	jnz	2b
	jmp	4f
3:	mov	%eax, (%ebx)
	add	$4096, %ebx
	dec	%ecx
	jnz	3b
4:	outb	%al, $DONE_PORT
	jmp	1b
bench_guest_end:
	.section .note.GNU-stack, "", @progbits

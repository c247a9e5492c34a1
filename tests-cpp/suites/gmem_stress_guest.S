/* SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause */
/*
 * The guest of gmem_stress_test: 32-bit protected mode, flat segments, no
 * paging. The host starts each vCPU at the copy of stress_guest_start with
 * ESI = the GPA of the vCPU's mailbox (ordinary memory) and, before each
 * KVM_RUN, writes one request there:
 *
 *   +0  op: 0 read, 1 write, 2 halt
 *   +4  GPA of a page
 *   +8  value to write
 *   +12 out: the first word of the page (read)
 *   +16 out: the last word of the page (read)
 *
 * A write stores the value in the first and the last word of the page. Each
 * request ends with an "out" to DONE_PORT, so one KVM_RUN is one access.
 */
#define DONE_PORT	0xe0

	.section .rodata
	.globl stress_guest_start, stress_guest_end
	.code32
stress_guest_start:
1:	mov	0(%esi), %eax
	mov	4(%esi), %ebx
	cmp	$1, %eax
	je	2f
	cmp	$2, %eax
	je	3f
	mov	(%ebx), %ecx
	mov	%ecx, 12(%esi)
	mov	4092(%ebx), %ecx
	mov	%ecx, 16(%esi)
	jmp	4f
2:	mov	8(%esi), %ecx
	mov	%ecx, (%ebx)
	mov	%ecx, 4092(%ebx)
4:	outb	%al, $DONE_PORT
	jmp	1b
3:	hlt
	jmp	3b
stress_guest_end:
	.section .note.GNU-stack, "", @progbits

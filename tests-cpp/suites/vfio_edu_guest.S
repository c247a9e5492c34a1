/* SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause */
/*
 * The guest of vfio_edu_gmem_test: 32-bit protected mode, flat segments,
 * no paging, driven by the VMM one command at a time. It asks for a
 * command with "out" to CMD_PORT; before it resumes the vCPU, the VMM
 * writes the command and its three arguments as dwords into the mailbox
 * at MAILBOX_GPA (ordinary memory), which the guest loads into EAX, EBX,
 * ECX and EDX:
 *
 *   1 FILL     write ECX dwords of value EDX from GPA EBX on
 *   2 MAP_GPA  the KVM_HC_MAP_GPA_RANGE hypercall (vmmcall) with GPA EBX,
 *              ECX pages, attributes EDX; the VMM converts in place
 *   3 READ     "outl" the dword at GPA EBX to READ_PORT
 *   anything else: hlt
 */
#define CMD_PORT	0xe0
#define READ_PORT	0xe1
#define HC_MAP_GPA	12
#define MAILBOX_GPA	0x800

	.section .rodata
	.globl edu_guest_start, edu_guest_end
	.code32
edu_guest_start:
next:
	xor	%eax, %eax
	outb	%al, $CMD_PORT
	mov	MAILBOX_GPA, %eax
	mov	MAILBOX_GPA + 4, %ebx
	mov	MAILBOX_GPA + 8, %ecx
	mov	MAILBOX_GPA + 12, %edx
	cmp	$1, %eax
	je	fill
	cmp	$2, %eax
	je	map_gpa
	cmp	$3, %eax
	je	read
	hlt

fill:
	mov	%ebx, %edi
	mov	%edx, %eax
	cld
	rep stosl
	jmp	next

map_gpa:
	mov	$HC_MAP_GPA, %eax
	vmmcall
	jmp	next

read:
	mov	(%ebx), %eax
	outl	%eax, $READ_PORT
	jmp	next
edu_guest_end:
	.section .note.GNU-stack, "", @progbits

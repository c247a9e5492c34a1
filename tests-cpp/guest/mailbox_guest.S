/* SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause */
/*
 * The mailbox guest: 32-bit protected mode, flat segments, no paging. The
 * commands and the mailbox's layout are described in gmem/mailbox.h; ESI
 * holds the GPA of this vCPU's mailbox throughout.
 */
#include "gmem/mailbox.h"

#define HC_MAP_GPA 12	/* KVM_HC_MAP_GPA_RANGE */

	.section .rodata
	.globl gmem_mailbox_guest_start, gmem_mailbox_guest_end
	.code32
gmem_mailbox_guest_start:
next:
	mov	GMEM_MB_CMD(%esi), %eax
	mov	GMEM_MB_GPA(%esi), %ebx
	mov	GMEM_MB_COUNT(%esi), %ecx
	mov	GMEM_MB_VALUE(%esi), %edx
	cmp	$GMEM_CMD_READ, %eax
	je	read
	cmp	$GMEM_CMD_WRITE, %eax
	je	write
	cmp	$GMEM_CMD_FILL, %eax
	je	fill
	cmp	$GMEM_CMD_TOUCH_READ, %eax
	je	touch_read
	cmp	$GMEM_CMD_TOUCH_WRITE, %eax
	je	touch_write
	cmp	$GMEM_CMD_MAP_GPA, %eax
	je	map_gpa
	/* GMEM_CMD_HALT, and anything unknown. */
	hlt
	jmp	next

read:
	mov	(%ebx), %ecx
	mov	%ecx, GMEM_MB_OUT0(%esi)
	add	GMEM_MB_OFFSET(%esi), %ebx
	mov	(%ebx), %ecx
	mov	%ecx, GMEM_MB_OUT1(%esi)
	jmp	done

write:
	mov	%edx, (%ebx)
	add	GMEM_MB_OFFSET(%esi), %ebx
	mov	%edx, (%ebx)
	jmp	done

fill:
	mov	%ebx, %edi
	mov	%edx, %eax
	cld
	rep stosl
	mov	$GMEM_CMD_FILL, %eax
	jmp	done

touch_read:
	test	%ecx, %ecx
	jz	done
1:	mov	(%ebx), %edx
	add	$GMEM_PAGE_SIZE, %ebx
	dec	%ecx
	jnz	1b
	mov	%edx, GMEM_MB_OUT0(%esi)
	jmp	done

touch_write:
	test	%ecx, %ecx
	jz	done
1:	mov	%edx, (%ebx)
	add	$GMEM_PAGE_SIZE, %ebx
	dec	%ecx
	jnz	1b
	jmp	done

map_gpa:
	/* RBX = GPA, RCX = pages, RDX = attributes, as loaded. */
	mov	$HC_MAP_GPA, %eax
	vmmcall
	mov	%eax, GMEM_MB_RET(%esi)
	mov	$GMEM_CMD_MAP_GPA, %eax

done:
	incl	GMEM_MB_DONE(%esi)
	outb	%al, $GMEM_DONE_PORT
	jmp	next
gmem_mailbox_guest_end:
	.section .note.GNU-stack, "", @progbits

/* SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause */
/*
 * The demo's guest: 32-bit protected mode, flat segments, no paging, laid
 * out as gmem/layout.h says. The VMM (a ConvertibleGuest) copies the bytes
 * between demo_guest_start and demo_guest_end to GMEM_GUEST_ENTRY and
 * starts the vCPU there.
 *
 * It talks to the VMM through two channels:
 *  - "out" to STEP_PORT (GMEM_DONE_PORT) with the step number in AL: the
 *    VMM checks and reports what the step did;
 *  - the KVM_HC_MAP_GPA_RANGE hypercall (vmmcall: RAX = 12, RBX = GPA,
 *    RCX = pages, RDX = attributes, bit 4 set for private), which the VMM
 *    turns into an in-place conversion of the guest_memfd.
 * Any failure it sees itself goes to FAIL_PORT (GMEM_FAIL_PORT) with a
 * code in AL.
 *
 * DATA_GPA lies in the iommufd mock IOMMU's aperture, so that the VMM can
 * give the data pages to a (mock) device at IOVA = GPA.
 */
#include "gmem/layout.h"

#define DATA_GPA	GMEM_DATA_GPA
#define DATA_PAGES	16
#define SHARED_PAGES	4
#define DMA_PAGES	8	/* shared next, after the message pages */
#define DISCARD_PAGE	8	/* first of the 4 pages given back at step 6 */
#define STEP_PORT	GMEM_DONE_PORT
#define FAIL_PORT	GMEM_FAIL_PORT
#define HC_MAP_GPA	12
#define ENCRYPTED	0x10
#define SECRET		0x31565250	/* "PRV1" */

	.section .rodata
	.globl demo_guest_start, demo_guest_end, demo_guest_message
	.code32
demo_guest_start:
	/* Step 1: fill all data pages, still private, with the secret. */
	mov	$DATA_GPA, %edi
	mov	$(DATA_PAGES * GMEM_PAGE_SIZE / 4), %ecx
	mov	$SECRET, %eax
	cld
	rep stosl
	mov	$1, %al
	outb	%al, $STEP_PORT

	/* Step 2: ask for the first pages to be shared. */
	mov	$HC_MAP_GPA, %eax
	mov	$DATA_GPA, %ebx
	mov	$SHARED_PAGES, %ecx
	xor	%edx, %edx
	vmmcall
	test	%eax, %eax
	jnz	fail_hypercall
	/* In place: the shared page still holds the secret. */
	cmpl	$SECRET, DATA_GPA + 8
	jne	fail_contents
	mov	$2, %al
	outb	%al, $STEP_PORT

	/* Step 3: write a message into the shared page for the VMM. */
	mov	$DATA_GPA, %edi
	call	1f
1:	pop	%esi
	add	$(message - 1b), %esi
	mov	$(message_end - message), %ecx
	rep movsb
	mov	$3, %al
	outb	%al, $STEP_PORT

	/* Step 4: share more pages, a buffer for the device. */
	mov	$HC_MAP_GPA, %eax
	mov	$(DATA_GPA + SHARED_PAGES * GMEM_PAGE_SIZE), %ebx
	mov	$DMA_PAGES, %ecx
	xor	%edx, %edx
	vmmcall
	test	%eax, %eax
	jnz	fail_hypercall
	cmpl	$SECRET, DATA_GPA + SHARED_PAGES * GMEM_PAGE_SIZE
	jne	fail_contents
	mov	$4, %al
	outb	%al, $STEP_PORT

	/* Step 5: make the message pages private again. */
	mov	$HC_MAP_GPA, %eax
	mov	$DATA_GPA, %ebx
	mov	$SHARED_PAGES, %ecx
	mov	$ENCRYPTED, %edx
	vmmcall
	test	%eax, %eax
	jnz	fail_hypercall
	/* Still the same page: the message is there, now private. */
	cmpl	$0x6c6c6548, DATA_GPA	/* "Hell" */
	jne	fail_contents
	mov	$5, %al
	outb	%al, $STEP_PORT

	/*
	 * Step 6: tell the VMM that the last 4 pages of the buffer are free;
	 * it discards them (hole punch) and allocates them again, so they must
	 * read zero now.
	 */
	mov	$6, %al
	outb	%al, $STEP_PORT
	mov	$(DATA_GPA + DISCARD_PAGE * GMEM_PAGE_SIZE), %edi
	mov	$(4 * GMEM_PAGE_SIZE / 4), %ecx
	xor	%eax, %eax
	repe scasl
	jne	fail_zero

	/* Done. */
	hlt

fail_hypercall:
	mov	$1, %al
	outb	%al, $FAIL_PORT
	hlt
fail_contents:
	mov	$2, %al
	outb	%al, $FAIL_PORT
	hlt
fail_zero:
	mov	$3, %al
	outb	%al, $FAIL_PORT
	hlt

message:
demo_guest_message:
	.asciz	"Hello from the guest, through the same pages it keeps private."
message_end:
demo_guest_end:
	.section .note.GNU-stack, "", @progbits

/* Loaded with LD_PRELOAD by benchmarks/avx2_only.py: this process (and every thread it starts) reads
 * CPUID with the AVX-512, AVX-VNNI, AVX-IFMA, AVX10 and AMX bits cleared, so every library that picks
 * its kernels from CPUID (ONNX Runtime's MLAS, oneDNN in torch and OpenVINO, OpenVINO's own kernels,
 * torch's ATen dispatch, MKL) runs the code it runs on an AVX2-only CPU, at the machine's own speed.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0; the "cpuid_fault" flag in /proc/cpuinfo)
 * makes each CPUID instruction raise SIGSEGV; the handler below runs the real CPUID with faulting off
 * for a moment, clears the bits, writes the registers back and steps over the instruction. A SIGSEGV
 * that is not a CPUID goes to the handler the program installed (Python's faulthandler, ...), which
 * sigaction() below records instead of installing, or kills the process as without this file.
 * The setting is inherited by threads and cleared by exec; LD_PRELOAD carries it into child processes.
 * If the kernel or the hypervisor refuses CPUID faulting, the process exits with status 3 and says so:
 * a benchmark must not run AVX-512 code while it claims AVX2. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static struct sigaction program_action; /* the SIGSEGV action the program asked for */
static int installed;

#define BIT(n) (1u << (n))
/* leaf 7, subleaf 0 */
static const unsigned HIDE_7_0_EBX = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31);
/* avx512f, dq, ifma, pf, er, cd, bw, vl */
static const unsigned HIDE_7_0_ECX = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14); /* vbmi, vbmi2, vnni, bitalg, vpopcntdq */
static const unsigned HIDE_7_0_EDX = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25);
/* 4vnniw, 4fmaps, vp2intersect, amx_bf16, avx512_fp16, amx_tile, amx_int8 */
/* leaf 7, subleaf 1 */
static const unsigned HIDE_7_1_EAX = BIT(4) | BIT(5) | BIT(21) | BIT(23); /* avx_vnni, avx512_bf16, amx_fp16, avx_ifma */
static const unsigned HIDE_7_1_EDX = BIT(4) | BIT(5) | BIT(19);            /* avx_vnni_int8, avx_ne_convert, avx10 */

static sigaction_fn real_sigaction(void) { return (sigaction_fn) dlsym(RTLD_NEXT, "sigaction"); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *reg = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *) reg[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) { /* CPUID */
        unsigned leaf = (unsigned) reg[REG_RAX], subleaf = (unsigned) reg[REG_RCX], a, b, c, d;
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        __cpuid_count(leaf, subleaf, a, b, c, d);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        if (leaf == 7 && subleaf == 0) {
            b &= ~HIDE_7_0_EBX;
            c &= ~HIDE_7_0_ECX;
            d &= ~HIDE_7_0_EDX;
        } else if (leaf == 7 && subleaf == 1) {
            a &= ~HIDE_7_1_EAX;
            d &= ~HIDE_7_1_EDX;
        } else if (leaf == 0x24) { /* AVX10 leaf */
            a = b = c = d = 0;
        }
        reg[REG_RAX] = a;
        reg[REG_RBX] = b;
        reg[REG_RCX] = c;
        reg[REG_RDX] = d;
        reg[REG_RIP] += 2;
        return;
    }
    if (program_action.sa_flags & SA_SIGINFO) {
        program_action.sa_sigaction(sig, info, context);
    } else if (program_action.sa_handler != SIG_DFL && program_action.sa_handler != SIG_IGN) {
        program_action.sa_handler(sig);
    } else { /* the default action: returning re-runs the faulting instruction, which now kills */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction()(SIGSEGV, &dfl, NULL);
    }
}

/* The program's own SIGSEGV handler is recorded, not installed: ours must stay first. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig != SIGSEGV || !installed) return real_sigaction()(sig, act, old);
    if (old) *old = program_action;
    if (act) program_action = *act;
    return 0;
}

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    real_sigaction()(SIGSEGV, &action, &program_action);
    installed = 1;
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        perror("avx2_only: this kernel or hypervisor refuses CPUID faulting (arch_prctl ARCH_SET_CPUID)");
        _exit(3);
    }
}

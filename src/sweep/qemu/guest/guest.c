/*
 * precopy-sweep validation guest: a tiny 32-bit multiboot kernel that dirties memory at a
 * wall-clock-paced rate, so real QEMU migrations can be compared with the model.
 *
 * Command line (after the kernel path), key=value words:
 *   ws=64M        working set written by the guest (K/M/G suffixes, bytes otherwise)
 *   fill=448M     memory made non-zero at boot (at least the working set)
 *   rate=20000    page writes per second, 0 for an idle guest, or "max"
 *   pattern=seq   "seq" (a ring over the working set) or "rand" (uniform, xorshift64*)
 *   catchup=100000  longest backlog (microseconds of writes) caught up after a stall
 *   seed=1        PRNG seed for pattern=rand
 *   report=100    report period in milliseconds
 *
 * Pacing: the TSC is calibrated against PIT channel 2, PIT channel 0 interrupts at 1 kHz, the
 * CPU halts between ticks, and each tick writes one 32-bit word per page until the number of
 * writes reaches rate x elapsed TSC time.  A stalled guest (auto-converge throttle, host load)
 * catches up at most `catchup` worth of writes, so a throttle shows in the achieved rate.
 *
 * Serial (COM1) lines, parsed by sweep.qemu.driver:
 *   BOOT tsc_khz=... mem_upper_kb=... base=... ws_pages=... fill_pages=... rate=... ...
 *   R t_us=<elapsed> writes=<cumulative page writes> pos=<ring position> skipped=<dropped>
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define PAGE 4096u
#define BASE 0x200000u /* written memory starts at 2 MiB, above the kernel */
#define PIT_HZ 1193182u

volatile u32 ticks;
extern void irq0_stub(void);
extern void ignore_stub(void);
extern void fault_stub(void);

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* 64-by-32 division with two divl steps (no libgcc in a freestanding 32-bit build). */
static u64 udiv64(u64 n, u32 d, u32 *rem)
{
    u32 hi = (u32)(n >> 32), lo = (u32)n;
    u32 qhi = hi / d, r = hi % d, qlo;
    __asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
    if (rem)
        *rem = r;
    return ((u64)qhi << 32) | qlo;
}

/* --- COM1 ------------------------------------------------------------------------------ */
static void serial_init(void)
{
    outb(0x3F9, 0x00);
    outb(0x3FB, 0x80);
    outb(0x3F8, 0x01); /* 115200 baud */
    outb(0x3F9, 0x00);
    outb(0x3FB, 0x03); /* 8N1 */
    outb(0x3FA, 0xC7);
    outb(0x3FC, 0x03);
}
static void putc_(char c)
{
    while (!(inb(0x3FD) & 0x20))
        ;
    outb(0x3F8, (u8)c);
}
static void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}
static void putu(u64 v)
{
    char buf[24];
    int i = 0;
    u32 r;
    do {
        v = udiv64(v, 10, &r);
        buf[i++] = (char)('0' + r);
    } while (v);
    while (i)
        putc_(buf[--i]);
}
static void kv(const char *key, u64 v)
{
    puts_(key);
    putc_('=');
    putu(v);
    putc_(' ');
}

void guest_fault(void) { puts_("\nFAULT\n"); }

/* --- command line ------------------------------------------------------------------------ */
static int streq(const char *a, const char *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return b[n] == 0;
}
static u64 parse_num(const char *s, int n)
{
    u64 v = 0;
    int i = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (u64)(s[i] - '0');
    if (i < n) {
        char u = s[i];
        if (u == 'K' || u == 'k')
            v <<= 10;
        else if (u == 'M' || u == 'm')
            v <<= 20;
        else if (u == 'G' || u == 'g')
            v <<= 30;
    }
    return v;
}

struct config {
    u64 ws, fill, catchup_us, seed, report_ms;
    u32 rate, max, rand;
};

static void parse_cmdline(const char *s, struct config *c)
{
    while (*s && *s != ' ') /* skip the kernel path */
        s++;
    while (*s) {
        while (*s == ' ')
            s++;
        const char *key = s;
        int klen = 0;
        while (s[klen] && s[klen] != '=' && s[klen] != ' ')
            klen++;
        if (s[klen] != '=') {
            s += klen;
            continue;
        }
        const char *val = s + klen + 1;
        int vlen = 0;
        while (val[vlen] && val[vlen] != ' ')
            vlen++;
        if (streq(key, "ws", klen))
            c->ws = parse_num(val, vlen);
        else if (streq(key, "fill", klen))
            c->fill = parse_num(val, vlen);
        else if (streq(key, "rate", klen)) {
            if (streq(val, "max", vlen))
                c->max = 1;
            else
                c->rate = (u32)parse_num(val, vlen);
        } else if (streq(key, "pattern", klen))
            c->rand = streq(val, "rand", vlen);
        else if (streq(key, "catchup", klen))
            c->catchup_us = parse_num(val, vlen);
        else if (streq(key, "seed", klen))
            c->seed = parse_num(val, vlen);
        else if (streq(key, "report", klen))
            c->report_ms = parse_num(val, vlen);
        s = val + vlen;
    }
}

/* --- interrupts ---------------------------------------------------------------------------- */
static u64 idt[256];
static void set_gate(int n, void (*fn)(void))
{
    u32 a = (u32)fn;
    idt[n] = (u64)((a & 0xFFFFu) | (0x08u << 16)) | ((u64)((a & 0xFFFF0000u) | 0x8E00u) << 32);
}
static void idt_init(void)
{
    for (int i = 0; i < 256; i++)
        set_gate(i, i < 32 ? fault_stub : ignore_stub);
    set_gate(32, irq0_stub);
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) ptr = {sizeof(idt) - 1, (u32)idt};
    __asm__ volatile("lidt %0" : : "m"(ptr));
}
static void pic_init(void)
{
    outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 */
    outb(0xA0, 0x11);
    outb(0x21, 0x20); /* master vectors 32..39 */
    outb(0xA1, 0x28); /* slave vectors 40..47 */
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFE); /* only IRQ0 */
    outb(0xA1, 0xFF);
}
static void pit_1khz(void)
{
    u32 div = (PIT_HZ + 500) / 1000;
    outb(0x43, 0x34); /* channel 0, lo/hi, mode 2 */
    outb(0x40, (u8)div);
    outb(0x40, (u8)(div >> 8));
}

/* TSC ticks per millisecond, timed against a one-shot of PIT channel 2 (gate via port 0x61). */
static u32 calibrate_tsc_khz(void)
{
    const u32 count = 59659; /* 50 ms */
    u64 best = ~0ull;
    for (int k = 0; k < 3; k++) {
        outb(0x61, (u8)((inb(0x61) & 0xFC) | 0x01));
        outb(0x43, 0xB0); /* channel 2, lo/hi, mode 0 */
        outb(0x42, (u8)count);
        outb(0x42, (u8)(count >> 8));
        u64 t0 = rdtsc();
        while (!(inb(0x61) & 0x20))
            ;
        u64 d = rdtsc() - t0;
        if (d < best)
            best = d;
    }
    return (u32)udiv64(best * PIT_HZ, count * 1000u, 0);
}

/* --- the workload -------------------------------------------------------------------------- */
static u64 rng;
static inline u32 xorshift64s(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (u32)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

void kmain(u32 magic, const u32 *mbi)
{
    struct config c = {64u << 20, 0, 100000, 1, 100, 0, 0, 0};
    serial_init();
    u32 mem_upper_kb = 0;
    if (magic == 0x2BADB002u) {
        if (mbi[0] & 0x1)
            mem_upper_kb = mbi[2];
        if (mbi[0] & 0x4)
            parse_cmdline((const char *)mbi[4], &c);
    }
    u64 top = 0x100000ull + (u64)mem_upper_kb * 1024u;
    u64 room = top > BASE + PAGE ? (top - BASE) & ~(u64)(PAGE - 1) : 0;
    if (c.fill < c.ws)
        c.fill = c.ws;
    if (c.fill > room)
        c.fill = room;
    if (c.ws > c.fill)
        c.ws = c.fill;
    u32 ws_pages = (u32)(c.ws / PAGE), fill_pages = (u32)(c.fill / PAGE);
    rng = c.seed ? c.seed : 1;

    for (u32 p = 0; p < fill_pages; p++) /* one non-zero word makes a page non-zero */
        *(volatile u32 *)(BASE + p * PAGE) = (p * 2654435761u) | 1u;

    idt_init();
    pic_init();
    u32 khz = calibrate_tsc_khz();
    pit_1khz();

    u64 backlog = udiv64((u64)c.rate * c.catchup_us, 1000000u, 0);
    if (backlog < 1)
        backlog = 1;
    puts_("BOOT ");
    kv("tsc_khz", khz);
    kv("mem_upper_kb", mem_upper_kb);
    kv("base", BASE);
    kv("ws_pages", ws_pages);
    kv("fill_pages", fill_pages);
    kv("rate", c.max ? 0 : c.rate);
    kv("max", c.max);
    kv("rand", c.rand);
    kv("catchup_us", c.catchup_us);
    kv("backlog_pages", backlog);
    kv("seed", c.seed);
    kv("report_ms", c.report_ms);
    puts_("\n");

    u64 writes = 0, skipped = 0, next_report = 0;
    u64 report_us = c.report_ms * 1000u;
    u32 pos = 0;
    int active = (c.rate || c.max) && ws_pages;
    u64 t0 = rdtsc();
    for (;;) {
        if (!c.max || !active)
            __asm__ volatile("sti; hlt; cli");
        u64 el_us = udiv64((rdtsc() - t0) * 1000u, khz, 0);
        if (active) {
            u64 due = c.max ? writes + 4096 : udiv64((u64)c.rate * el_us, 1000000u, 0) - skipped;
            if (!c.max && due > writes + backlog) { /* drop what a stall left undone */
                skipped += due - writes - backlog;
                due = writes + backlog;
            }
            while (writes < due) {
                u32 page;
                if (c.rand) {
                    page = (u32)(((u64)xorshift64s() * ws_pages) >> 32);
                } else {
                    page = pos;
                    if (++pos == ws_pages)
                        pos = 0;
                }
                writes++;
                *(volatile u32 *)(BASE + page * PAGE) = (u32)writes | 0x80000000u;
            }
        }
        if (el_us >= next_report) {
            puts_("R ");
            kv("t_us", el_us);
            kv("writes", writes);
            kv("pos", pos);
            kv("skipped", skipped);
            puts_("\n");
            next_report += report_us;
            if (next_report <= el_us) /* a long stall: report once, stay on the grid */
                next_report = (udiv64(el_us, (u32)report_us, 0) + 1) * report_us;
        }
    }
}

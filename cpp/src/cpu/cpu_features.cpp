#include "cpu/cpu_features.h"

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define DPN_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace dpn::cpu {

namespace {

#if defined(DPN_X86)
void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
#if defined(_MSC_VER)
  int x[4];
  __cpuidex(x, int(leaf), int(sub));
  for (int i = 0; i < 4; ++i) r[i] = uint32_t(x[i]);
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

uint64_t xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
#endif
}
#endif

// Data/unified cache sizes by level from the deterministic cache leaf (4 on Intel, 0x8000001D on AMD):
// ways × partitions × line size × sets for each subleaf until the "no more caches" type 0.
void detect_caches(uint32_t leaf, Features* f) {
  uint32_t r[4];
  for (uint32_t sub = 0; sub < 16; ++sub) {
    cpuid(leaf, sub, r);
    const uint32_t type = r[0] & 0x1F, level = (r[0] >> 5) & 0x7;
    if (type == 0) break;
    if (type != 1 && type != 3) continue;  // 1 data, 3 unified; skip instruction caches
    const int64_t bytes = int64_t((r[1] >> 22) + 1) * (((r[1] >> 12) & 0x3FF) + 1) *
                          ((r[1] & 0xFFF) + 1) * (int64_t(r[2]) + 1);
    if (level == 1) f->l1d_bytes = bytes;
    if (level == 2) f->l2_bytes = bytes;
  }
}

// Linux keeps AMX tile data off until a process asks for it (arch_prctl ARCH_REQ_XCOMP_PERM with
// XFEATURE_XTILEDATA = 18); it refuses, for one, when a thread's alternate signal stack is too small
// for the tile state. Other systems: assume the OS that enabled the state in XCR0 allows its use.
bool amx_permitted() {
  const char* env = std::getenv("DPN_AMX");
  if (env && std::strcmp(env, "0") == 0) return false;
#if defined(__linux__) && defined(SYS_arch_prctl)
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
  return true;
#endif
}

Features detect() {
  Features f;
#if defined(DPN_X86)
  uint32_t r[4];
  cpuid(0, 0, r);
  const uint32_t max_leaf = r[0];
  char v[13] = {};
  std::memcpy(v, &r[1], 4);
  std::memcpy(v + 4, &r[3], 4);
  std::memcpy(v + 8, &r[2], 4);
  f.vendor = v;
  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char b[49] = {};
    for (uint32_t i = 0; i < 3; ++i) {
      cpuid(0x80000002u + i, 0, r);
      std::memcpy(b + 16 * i, r, 16);
    }
    std::string s = b;
    const size_t a = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
    f.brand = a == std::string::npos ? "" : s.substr(a, e - a + 1);
  }
  if (f.vendor == "AuthenticAMD" || f.vendor == "HygonGenuine") {
    cpuid(0x80000000u, 0, r);
    if (r[0] >= 0x8000001Du) detect_caches(0x8000001Du, &f);
  } else if (max_leaf >= 4) {
    detect_caches(4, &f);
  }
  if (max_leaf < 1) return f;
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, fma = (r[2] >> 12) & 1,
             f16c = (r[2] >> 29) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = ymm_os && (xcr0 & 0xE0) == 0xE0;
  if (!ymm_os) return f;
  f.fma = fma;
  f.f16c = f16c;
  if (max_leaf < 7) return f;
  cpuid(7, 0, r);
  const uint32_t ebx = r[1], ecx = r[2], max_sub = r[0];
  f.avx2 = (ebx >> 5) & 1;
  if (zmm_os) {
    f.avx512f = (ebx >> 16) & 1;
    f.avx512dq = (ebx >> 17) & 1;
    f.avx512bw = (ebx >> 30) & 1;
    f.avx512vl = (ebx >> 31) & 1;
    f.avx512_vnni = f.avx512f && ((ecx >> 11) & 1);
    // AMX-BF16 (EDX bit 22) and AMX-TILE (bit 24), XTILECFG and XTILEDATA (XCR0 bits 17, 18).
    const uint32_t edx = r[3];
    const bool amx_cpu = ((edx >> 22) & 1) && ((edx >> 24) & 1), amx_os = (xcr0 & 0x60000) == 0x60000;
    f.amx_bf16 = f.avx512f && amx_cpu && amx_os && amx_permitted();
    f.amx_int8 = f.amx_bf16 && ((edx >> 25) & 1);  // AMX-INT8 (EDX bit 25)
    if (max_sub >= 1) {
      cpuid(7, 1, r);
      f.avx512_bf16 = f.avx512f && ((r[0] >> 5) & 1);
    }
  }
#endif
  return f;
}

Selection decide() {
  Selection s;
  s.isa = best_available();
  const char* env = std::getenv("DPN_ISA");
  if (!env) return s;
  s.overridden = true;
  s.override_value = env;
  std::string v;
  for (const char* p = env; *p; ++p) v += char(std::tolower(static_cast<unsigned char>(*p)));
  Isa want;
  if (v.empty() || v == "auto") return s;
  if (!parse_isa(v, &want)) {
    s.note = "DPN_ISA='" + s.override_value +
             "' is not one of avx512amx, avx512bf16, avx512, avx2, ref; ignored, using " +
             isa_name(s.isa);
    return s;
  }
  if (!available(want)) {
    s.note = std::string("DPN_ISA=") + isa_name(want) +
             " requested but this CPU/OS (or this build) does not support it; using " + isa_name(s.isa);
    return s;
  }
  s.isa = want;
  return s;
}

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

const Selection& selection() {
  static const Selection s = decide();
  return s;
}

bool available(Isa isa) {
#if defined(DPN_X86) && defined(DPN_HAVE_X86_KERNELS)
  switch (isa) {
    case Isa::Ref: return true;
    case Isa::Avx2: return features().has_avx2_fma();
    case Isa::Avx512: return features().has_avx512();
    case Isa::Avx512Bf16: return features().has_avx512_bf16();
    case Isa::Avx512Amx: return features().has_avx512_amx();
  }
  return false;
#else
  return isa == Isa::Ref;
#endif
}

Isa best_available() {
  if (available(Isa::Avx512Amx)) return Isa::Avx512Amx;
  if (available(Isa::Avx512Bf16)) return Isa::Avx512Bf16;
  if (available(Isa::Avx512)) return Isa::Avx512;
  if (available(Isa::Avx2)) return Isa::Avx2;
  return Isa::Ref;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Ref: return "ref";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512bf16";
    case Isa::Avx512Amx: return "avx512amx";
  }
  return "ref";
}

bool parse_isa(const std::string& s, Isa* out) {
  if (s == "ref")
    *out = Isa::Ref;
  else if (s == "avx2")
    *out = Isa::Avx2;
  else if (s == "avx512")
    *out = Isa::Avx512;
  else if (s == "avx512bf16")
    *out = Isa::Avx512Bf16;
  else if (s == "avx512amx")
    *out = Isa::Avx512Amx;
  else
    return false;
  return true;
}

}  // namespace dpn::cpu

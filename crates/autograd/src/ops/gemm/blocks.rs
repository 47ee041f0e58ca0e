//! The GEMM's cache blocking (MC, KC, NC), sized from the running CPU's caches.
//!
//! The sizes are read once, at the first product: from Linux's
//! `/sys/devices/system/cpu/cpu0/cache/index*/`, else from CPUID (leaf 4 on Intel,
//! 0x8000001D on AMD), else the Zen 3 values below. They are turned into blocks by the
//! BLIS rules (Low et al., "Analytical modeling is enough for high-performance BLIS"):
//! - KC: one `KC × NR` micro-panel of B stays in half of L1 while A's `MR × KC`
//!   micro-panels stream through the other half;
//! - MC: A's `MC × KC` block takes a bit over a quarter of L2, leaving the rest to
//!   B's micro-panels passing through and to C's tiles;
//! - NC: B's `KC × NC` block takes a quarter of this core's share of L3.
//!
//! On the Zen 3 machines this was tuned on (32 KiB L1d, 512 KiB L2, 32 MiB L3 shared
//! by the cores) the rules give BLIS's own Zen values (KC 256, MC 144, NC ≈ 4080).
//! `TAPEGRAD_GEMM_BLOCKS=mc,kc,nc` overrides them (for experiments).
//!
//! KC sets where each element's sum over k is cut into blocks, so results may differ
//! in the last bits between CPUs with different L1 sizes; it never depends on the
//! thread count. MC and NC only move tile boundaries, never a sum.

use std::sync::OnceLock;

/// The environment variable that overrides the blocks: `mc,kc,nc`.
pub(crate) const BLOCKS_ENV: &str = "TAPEGRAD_GEMM_BLOCKS";

/// Cache sizes in bytes, per core (a cache shared by several cores is divided by their
/// count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caches {
    pub l1d: usize,
    pub l2: usize,
    pub l3: usize,
}

/// The caches of the Zen 3 virtual machine the fixed blocks were first tuned on (its
/// 32 MiB L3 shared by 2 cores): the fallback when the CPU cannot be asked.
const FALLBACK: Caches = Caches {
    l1d: 32 << 10,
    l2: 512 << 10,
    l3: 16 << 20,
};

/// The cache blocking of the driver, for one kernel's tile shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocks {
    /// Rows of A packed per block (a multiple of MR).
    pub mc: usize,
    /// Depth of a k block.
    pub kc: usize,
    /// Columns of B packed per block (a multiple of NR).
    pub nc: usize,
}

impl Blocks {
    /// The blocks for an `mr × nr` kernel on a CPU with `caches`, by the rules in the
    /// module's comment, each clamped to a range where the driver stays efficient (a
    /// tiny or huge reported cache must not give a KC of 4 or an NC of a million).
    pub(crate) fn for_caches(caches: Caches, mr: usize, nr: usize) -> Blocks {
        const F: usize = std::mem::size_of::<f32>();
        let kc = (caches.l1d / 2 / (nr * F)).clamp(64, 1024) / 8 * 8;
        let mc = (caches.l2 * 9 / 32 / (kc * F)).clamp(mr * 4, 1024) / mr * mr;
        let nc = (caches.l3 / 4 / (kc * F)).clamp(nr * 16, 16384) / nr * nr;
        Blocks { mc, kc, nc }
    }

    /// `mc,kc,nc` from the override variable, rounded to the tile shape; `None` if the
    /// text is not three positive numbers.
    fn parse(text: &str, mr: usize, nr: usize) -> Option<Blocks> {
        let v: Vec<usize> = text
            .split(',')
            .map(|s| s.trim().parse().ok().filter(|&x: &usize| x > 0))
            .collect::<Option<_>>()?;
        let &[mc, kc, nc] = v.as_slice() else {
            return None;
        };
        Some(Blocks {
            mc: mc.div_ceil(mr) * mr,
            kc,
            nc: nc.div_ceil(nr) * nr,
        })
    }
}

/// The blocks for a kernel with this tile shape on the running CPU, computed once per
/// tile shape (the kernel is fixed per process, so in practice once).
pub(crate) fn blocks(mr: usize, nr: usize) -> Blocks {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    static OVERRIDE: OnceLock<Option<String>> = OnceLock::new();
    let caches = *CACHES.get_or_init(|| detect().unwrap_or(FALLBACK));
    let wanted = OVERRIDE.get_or_init(|| std::env::var(BLOCKS_ENV).ok());
    if let Some(text) = wanted {
        match Blocks::parse(text, mr, nr) {
            Some(b) => return b,
            None => warn_once(text),
        }
    }
    Blocks::for_caches(caches, mr, nr)
}

fn warn_once(text: &str) {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        eprintln!("tapegrad: {BLOCKS_ENV}={text} is not `mc,kc,nc`; using the CPU's caches");
    });
}

/// This CPU's caches, from sysfs or CPUID; `None` if neither says.
fn detect() -> Option<Caches> {
    from_sysfs().or_else(from_cpuid)
}

/// One cache as an OS or CPU describes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CacheInfo {
    pub level: u32,
    /// Data or unified (instruction caches are skipped).
    pub data: bool,
    pub bytes: usize,
    /// Logical CPUs sharing it.
    pub shared_by: usize,
}

/// The per-core L1d, L2 and L3 from a list of caches; `None` without an L1d and an L2.
/// A missing L3 counts as none (NC then takes its smallest value).
pub(crate) fn summarize(caches: &[CacheInfo]) -> Option<Caches> {
    let per_core = |level| {
        caches
            .iter()
            .find(|c| c.level == level && c.data && c.bytes > 0)
            .map(|c| c.bytes / c.shared_by.max(1))
    };
    Some(Caches {
        // L1 and L2 are private on every CPU we know; count the whole cache even if
        // SMT siblings share it (they share the core's arithmetic too).
        l1d: caches
            .iter()
            .find(|c| c.level == 1 && c.data && c.bytes > 0)?
            .bytes,
        l2: caches
            .iter()
            .find(|c| c.level == 2 && c.data && c.bytes > 0)?
            .bytes,
        l3: per_core(3).unwrap_or(0),
    })
}

/// `"32K"`, `"1024K"`, `"32M"` or a plain byte count, as sysfs writes cache sizes.
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let (digits, unit) = match t.as_bytes().last()? {
        b'K' | b'k' => (&t[..t.len() - 1], 1 << 10),
        b'M' | b'm' => (&t[..t.len() - 1], 1 << 20),
        b'G' | b'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    digits.trim().parse::<usize>().ok()?.checked_mul(unit)
}

/// How many CPUs a sysfs `shared_cpu_list` (`"0-1"`, `"0,4"`, `"0-3,8-11"`) names.
pub(crate) fn count_cpus(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.trim().parse::<usize>().ok()? + 1 - a.trim().parse::<usize>().ok()?,
            None => {
                part.trim().parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(n)
}

fn from_sysfs() -> Option<Caches> {
    let mut found = Vec::new();
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let Some(level) = read("level") else { break };
        let kind = read("type").unwrap_or_default();
        found.push(CacheInfo {
            level: level.trim().parse().ok()?,
            data: matches!(kind.trim(), "Data" | "Unified"),
            bytes: read("size").and_then(|s| parse_size(&s)).unwrap_or(0),
            shared_by: read("shared_cpu_list")
                .and_then(|s| count_cpus(&s))
                .unwrap_or(1),
        });
    }
    summarize(&found)
}

#[cfg(target_arch = "x86_64")]
fn from_cpuid() -> Option<Caches> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let l0 = __cpuid(0);
    let vendor_amd = l0.ebx == 0x6874_7541; // "Auth" of "AuthenticAMD"
    let (max_basic, max_ext) = (l0.eax, __cpuid(0x8000_0000).eax);
    let leaf = if vendor_amd && max_ext >= 0x8000_001D {
        0x8000_001D
    } else if !vendor_amd && max_basic >= 4 {
        4
    } else {
        return None;
    };
    let mut found = Vec::new();
    for sub in 0..8 {
        // The leaf was checked against the CPU's maximum above.
        let r = __cpuid_count(leaf, sub);
        match cpuid_cache(r.eax, r.ebx, r.ecx) {
            Some(c) => found.push(c),
            None => break,
        }
    }
    summarize(&found)
}

#[cfg(not(target_arch = "x86_64"))]
fn from_cpuid() -> Option<Caches> {
    None
}

/// One cache from the registers of CPUID leaf 4 / 0x8000001D (same layout on both);
/// `None` for the "no more caches" entry.
pub(crate) fn cpuid_cache(eax: u32, ebx: u32, ecx: u32) -> Option<CacheInfo> {
    let kind = eax & 0x1F;
    if kind == 0 {
        return None;
    }
    let ways = ((ebx >> 22) & 0x3FF) as usize + 1;
    let partitions = ((ebx >> 12) & 0x3FF) as usize + 1;
    let line = (ebx & 0xFFF) as usize + 1;
    let sets = ecx as usize + 1;
    Some(CacheInfo {
        level: (eax >> 5) & 0x7,
        data: kind == 1 || kind == 3,
        bytes: ways * partitions * line * sets,
        shared_by: ((eax >> 14) & 0xFFF) as usize + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zen3_caches_give_the_blis_zen_blocks() {
        // A full Zen 3 CCX: 32 MiB of L3 shared by 8 cores.
        let zen3 = Caches {
            l3: 4 << 20,
            ..FALLBACK
        };
        assert_eq!(
            Blocks::for_caches(zen3, 6, 16),
            Blocks {
                mc: 144,
                kc: 256,
                nc: 1024
            }
        );
        assert_eq!(
            Blocks::for_caches(FALLBACK, 6, 16),
            Blocks {
                mc: 144,
                kc: 256,
                nc: 4096
            }
        );
    }

    #[test]
    fn blocks_follow_the_caches_and_stay_in_range() {
        // An Intel server core: 48 KiB L1d, 2 MiB L2, 1.875 MiB of L3 per core.
        let icx = Caches {
            l1d: 48 << 10,
            l2: 2 << 20,
            l3: 1920 << 10,
        };
        let b = Blocks::for_caches(icx, 6, 16);
        assert_eq!(b.kc, 384);
        assert_eq!(b.mc, 384); // 2 MiB · 9/32 / (384 · 4) = 384, a multiple of 6
        assert_eq!(b.nc, 320); // 1.875 MiB / 4 / (384 · 4)
                               // Nothing reported: every block at its lower clamp, still tile multiples.
        let none = Blocks::for_caches(
            Caches {
                l1d: 0,
                l2: 0,
                l3: 0,
            },
            4,
            8,
        );
        assert_eq!(
            none,
            Blocks {
                mc: 16,
                kc: 64,
                nc: 128
            }
        );
        // Huge caches: the upper clamps.
        let huge = Caches {
            l1d: 1 << 30,
            l2: 1 << 30,
            l3: 1 << 40,
        };
        let b = Blocks::for_caches(huge, 6, 16);
        assert_eq!((b.kc, b.mc % 6, b.nc), (1024, 0, 16384));
        assert!(b.mc <= 1024);
    }

    #[test]
    fn the_override_is_parsed_and_rounded_to_tiles() {
        assert_eq!(
            Blocks::parse("100, 33 ,50", 6, 16),
            Some(Blocks {
                mc: 102,
                kc: 33,
                nc: 64
            })
        );
        assert_eq!(Blocks::parse("1,2", 6, 16), None);
        assert_eq!(Blocks::parse("1,0,3", 6, 16), None);
        assert_eq!(Blocks::parse("a,b,c", 6, 16), None);
    }

    #[test]
    fn sysfs_text_is_parsed() {
        assert_eq!(parse_size("32K\n"), Some(32 << 10));
        assert_eq!(parse_size("32768K"), Some(32 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(count_cpus("0-1\n"), Some(2));
        assert_eq!(count_cpus("0,4"), Some(2));
        assert_eq!(count_cpus("0-3,8-11"), Some(8));
        assert_eq!(count_cpus("3"), Some(1));
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn a_cache_list_is_summarized_per_core() {
        let c = |level, data, kib: usize, shared_by| CacheInfo {
            level,
            data,
            bytes: kib << 10,
            shared_by,
        };
        let list = [
            c(1, true, 32, 2),
            c(1, false, 32, 2),
            c(2, true, 512, 2),
            c(3, true, 32 << 10, 16),
        ];
        assert_eq!(
            summarize(&list),
            Some(Caches {
                l1d: 32 << 10,
                l2: 512 << 10,
                l3: 2 << 20
            })
        );
        // Without an L2 the list says too little.
        assert_eq!(summarize(&list[..2]), None);
        // No L3.
        assert_eq!(summarize(&list[..3]).map(|c| c.l3), Some(0));
    }

    #[test]
    fn cpuid_registers_decode() {
        // L1d: 8 ways, 1 partition, 64-byte lines, 64 sets = 32 KiB; type 1, level 1,
        // shared by 2 threads.
        let eax = 1 | (1 << 5) | (1 << 14);
        let ebx = (7 << 22) | 63;
        let info = cpuid_cache(eax, ebx, 63).unwrap();
        assert_eq!(
            (info.level, info.data, info.bytes, info.shared_by),
            (1, true, 32 << 10, 2)
        );
        // An instruction cache (type 2) is not data; type 0 ends the list.
        assert!(!cpuid_cache(2 | (1 << 5), ebx, 63).unwrap().data);
        assert!(cpuid_cache(0, ebx, 63).is_none());
    }

    #[test]
    fn this_cpu_gives_usable_blocks() {
        let b = blocks(6, 16);
        assert!(b.mc % 6 == 0 && b.nc % 16 == 0 && b.kc > 0);
        if std::env::var(BLOCKS_ENV).is_err() {
            assert!((64..=1024).contains(&b.kc));
        }
    }
}

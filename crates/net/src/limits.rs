//! The open-files limit.

/// Raises RLIMIT_NOFILE so that `wanted` descriptors fit, raising the hard limit too when
/// allowed (root). Returns the soft limit in force afterwards.
pub fn raise_open_files_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= wanted {
        return lim.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: lim.rlim_max.max(wanted),
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return wanted;
    }
    // Not allowed past the hard limit: take as much as it gives.
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max.min(wanted),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } == 0 {
        return capped.rlim_cur;
    }
    lim.rlim_cur
}

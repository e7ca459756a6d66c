//! The default seccomp profile: the system calls Docker's default profile
//! refuses to a container without CAP_SYS_ADMIN, answered with EPERM.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::SetupError;
use crate::config::SeccompPolicy;

/// Refused outright.
const REFUSED: &[i64] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_uselib,
    libc::SYS_userfaultfd,
    libc::SYS_ustat,
    libc::SYS_vhangup,
];

/// `clone` flags that create namespaces (CLONE_NEWNS ... CLONE_NEWNET, as Docker masks them).
const NAMESPACE_CLONE_FLAGS: u64 = 0x7E02_0000;

/// The filters `policy` installs, in order (none when unconfined).
pub fn filters(policy: SeccompPolicy) -> Result<Vec<BpfProgram>, SetupError> {
    match policy {
        SeccompPolicy::RuntimeDefault => default_profile(),
        SeccompPolicy::Unconfined => Ok(Vec::new()),
    }
}

/// The filters to install, in order. Two filters because they answer with
/// different errors: the second makes `clone3` fail with ENOSYS, so that libc
/// falls back to `clone`, whose flags the first filter can inspect.
pub fn default_profile() -> Result<Vec<BpfProgram>, SetupError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| SetupError::Seccomp(format!("{e}")))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|nr| (*nr, Vec::new())).collect();
    // A rule's conditions are and-ed, a syscall's rules or-ed: one rule per
    // namespace bit refuses a clone with any of them.
    let per_bit: Vec<SeccompRule> = (0..64)
        .map(|bit| 1u64 << bit)
        .filter(|b| NAMESPACE_CLONE_FLAGS & b != 0)
        .map(|b| {
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(b), b)
                .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| SetupError::Seccomp(e.to_string()))?;
    rules.insert(libc::SYS_clone, per_bit);
    let eperm = compile(rules, libc::EPERM as u32, arch)?;
    let enosys = compile([(libc::SYS_clone3, Vec::new())].into_iter().collect(), libc::ENOSYS as u32, arch)?;
    Ok(vec![eperm, enosys])
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: u32,
    arch: seccompiler::TargetArch,
) -> Result<BpfProgram, SetupError> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno), arch)
        .map_err(|e| SetupError::Seccomp(e.to_string()))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| SetupError::Seccomp(e.to_string()))
}

/// Installs `filters` on the calling thread. Unlike `seccompiler::apply_filter`
/// this does not set no_new_privs: that is the spec's choice, and without it
/// the caller must still hold CAP_SYS_ADMIN.
pub fn install(filters: &[BpfProgram]) -> Result<(), SetupError> {
    for filter in filters {
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `program` points at a live, valid BPF program for the call's duration.
        let rc = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &program as *const libc::sock_fprog)
        };
        if rc != 0 {
            return Err(SetupError::Sys { what: "installing the seccomp filter".into(), errno: nix::Error::last() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles() {
        let filters = default_profile().unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters[0].len() > REFUSED.len());
    }
}

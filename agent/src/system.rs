//! System information for heartbeats (`sysinfo`): CPU use, memory, the disk holding the work
//! directory, the 1-minute load average and the number of running tasks.
//!
//! Sampling reads `/proc` and `statvfs`, which block: the session runs [`SystemProbe::sample`]
//! on tokio's blocking pool. CPU use is measured between two samples (the first one, taken at
//! start, only primes the counters).

use std::path::{Path, PathBuf};

use orchestra_proto::v1::Heartbeat;
use sysinfo::{Disks, System};

/// Samples the machine's load.
#[derive(Debug)]
pub struct SystemProbe {
    sys: System,
    disks: Disks,
    workdir: PathBuf,
}

impl SystemProbe {
    /// A probe reporting the disk that holds `workdir`.
    pub fn new(workdir: &Path) -> Self {
        let mut sys = System::new();
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        SystemProbe {
            sys,
            disks: Disks::new_with_refreshed_list(),
            workdir: std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_path_buf()),
        }
    }

    /// A heartbeat with the current figures.
    pub fn sample(&mut self, running_tasks: u32) -> Heartbeat {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        self.disks.refresh(true);
        // The disk of the longest mount point that contains the work directory.
        let disk = self
            .disks
            .list()
            .iter()
            .filter(|d| self.workdir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len());
        let (disk_total, disk_used) = disk
            .map(|d| {
                (
                    d.total_space(),
                    d.total_space().saturating_sub(d.available_space()),
                )
            })
            .unwrap_or((0, 0));
        Heartbeat {
            cpu_percent: self.sys.global_cpu_usage().clamp(0.0, 100.0),
            memory_used_bytes: self.sys.used_memory(),
            memory_total_bytes: self.sys.total_memory(),
            disk_used_bytes: disk_used,
            disk_total_bytes: disk_total,
            running_tasks,
            load_average: System::load_average().one as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_this_machine() {
        let mut probe = SystemProbe::new(Path::new("."));
        let hb = probe.sample(3);
        assert!(hb.memory_total_bytes > 0);
        assert!(hb.memory_used_bytes <= hb.memory_total_bytes);
        assert!(hb.disk_total_bytes > 0);
        assert!(hb.disk_used_bytes <= hb.disk_total_bytes);
        assert_eq!(hb.running_tasks, 3);
        assert!((0.0..=100.0).contains(&hb.cpu_percent));
    }
}

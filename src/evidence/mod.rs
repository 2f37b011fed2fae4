//! Evidence sources: vTPM and /dev/sev-guest (owner: evidence).

//! JSON view of a report for `skrctl evidence verify --json` (schema in the brief of the CLI;
//! field names follow PROTOCOLS.md §3.2). All byte strings are lower-case hex.

use serde_json::{json, Map, Value};

use super::generation::Generation;
use super::report::Report;
use super::tcb::{RawTcb, TcbLayout};
use super::verify::VerifiedReport;

fn tcb_json(t: RawTcb, layout: Option<TcbLayout>) -> Value {
    match layout {
        None => json!({ "raw": t.to_tcbm() }),
        Some(l) => {
            let v = t.decode(l);
            let mut m = Map::new();
            m.insert("bootloader".into(), v.bootloader.into());
            m.insert("tee".into(), v.tee.into());
            m.insert("snp".into(), v.snp.into());
            m.insert("microcode".into(), v.microcode.into());
            if let Some(f) = v.fmc {
                m.insert("fmc".into(), f.into());
            }
            m.insert("raw".into(), t.to_tcbm().into());
            Value::Object(m)
        }
    }
}

/// The report as JSON. `product` is the report's own generation (`null` when a v2 report cannot
/// tell Milan from Genoa); TCBs are decoded with [`Report::tcb_layout`] and always carry
/// `"raw"` (the THIM `tcbm` form); when no layout is known only `{"raw": tcbm}` is given. Use
/// [`report_json_with_product`] after verification to name the chain's generation.
pub fn report_json(report: &Report) -> Value {
    report_json_with_product(report, report.generation)
}

/// [`report_json`] with the generation given by the caller (e.g. [`VerifiedReport::product`]).
pub fn report_json_with_product(report: &Report, product: Option<Generation>) -> Value {
    let layout = product
        .map(Generation::tcb_layout)
        .or_else(|| report.tcb_layout());
    let p = &report.policy;
    let pi = &report.platform_info;
    let ki = &report.key_info;
    let mut v = json!({
        "version": report.version,
        "product": product.map(Generation::name),
        "signing_key": ki.signing_key.as_str(),
        "chip_id": hex::encode(report.chip_id),
        "measurement": hex::encode(report.measurement),
        "report_data": hex::encode(report.report_data),
        "host_data": hex::encode(report.host_data),
        "family_id": hex::encode(report.family_id),
        "image_id": hex::encode(report.image_id),
        "id_key_digest": hex::encode(report.id_key_digest),
        "author_key_digest": hex::encode(report.author_key_digest),
        "report_id": hex::encode(report.report_id),
        "report_id_ma": hex::encode(report.report_id_ma),
        "policy": {
            "abi_major": p.abi_major,
            "abi_minor": p.abi_minor,
            "smt_allowed": p.smt_allowed,
            "reserved_bit17_set": p.reserved_bit17_set,
            "migrate_ma_allowed": p.migrate_ma_allowed,
            "debug_allowed": p.debug_allowed,
            "single_socket": p.single_socket,
            "cxl_allowed": p.cxl_allowed,
            "mem_aes_256_xts": p.mem_aes_256_xts,
            "rapl_disabled": p.rapl_disabled,
            "ciphertext_hiding": p.ciphertext_hiding,
            "page_swap_disabled": p.page_swap_disabled,
            "reserved_bits": format!("0x{:x}", p.reserved_bits),
            "raw": format!("0x{:x}", p.raw),
        },
        "vmpl": report.vmpl,
        "guest_svn": report.guest_svn,
        "signature_algo": report.signature_algo,
        "platform_info": {
            "smt_enabled": pi.smt_enabled,
            "tsme_enabled": pi.tsme_enabled,
            "ecc_enabled": pi.ecc_enabled,
            "rapl_disabled": pi.rapl_disabled,
            "ciphertext_hiding_enabled": pi.ciphertext_hiding_enabled,
            "alias_check_complete": pi.alias_check_complete,
            "sev_tio_enabled": pi.sev_tio_enabled,
            "unknown_bits": format!("0x{:x}", pi.unknown_bits),
            "raw": format!("0x{:x}", pi.raw),
        },
        "key_info": {
            "author_key_en": ki.author_key_en,
            "mask_chip_key": ki.mask_chip_key,
            "signing_key": ki.signing_key.as_str(),
            "raw": format!("0x{:x}", ki.raw),
        },
        "current_tcb": tcb_json(report.current_tcb, layout),
        "reported_tcb": tcb_json(report.reported_tcb, layout),
        "committed_tcb": tcb_json(report.committed_tcb, layout),
        "launch_tcb": tcb_json(report.launch_tcb, layout),
        "cpuid": report.cpuid.map(|c| json!({
            "family": c.family, "model": c.model, "stepping": c.stepping
        })),
        "current_version": report.current_version.to_string(),
        "committed_version": report.committed_version.to_string(),
    });
    if let Value::Object(m) = &mut v {
        if let Some(x) = report.launch_mit_vector {
            m.insert("launch_mit_vector".into(), format!("0x{x:x}").into());
        }
        if let Some(x) = report.current_mit_vector {
            m.insert("current_mit_vector".into(), format!("0x{x:x}").into());
        }
    }
    v
}

/// The verification outcome as JSON (which roots and leaf were used).
pub fn verified_json(v: &VerifiedReport) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

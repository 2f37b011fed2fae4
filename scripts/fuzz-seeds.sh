#!/usr/bin/env bash
# Seeds each fuzz target's corpus with the real artifacts of its format, so a short smoke run
# starts from valid inputs instead of empty ones. Usage: scripts/fuzz-seeds.sh TARGET
set -euo pipefail
cd "$(dirname "$0")/.."
t=$1
dir=fuzz/corpus/$t
mkdir -p "$dir"
real=tests/fixtures/real
case $t in
    fuzz_snp_report) find $real -name '*.bin' -size 1184c -exec cp -t "$dir" {} + ;;
    fuzz_hcl_report) find $real -name '*hcl*.bin' -exec cp -t "$dir" {} + ;;
    fuzz_amd_certs)  find $real \( -name '*.pem' -o -name '*.der' -o -name '*.cert' -o -name '*.testcer' \) \
                         -exec cp -t "$dir" {} + ;;
    fuzz_cert_table) cp $real/constellation/aws-snp-history/certs_valid-2023-06.bin "$dir"/ ;;
    fuzz_config)     cp config/skrd.toml tests/fixtures/config/*.toml "$dir"/ ;;
    fuzz_release_policy) find $real/policies -type f -exec cp -t "$dir" {} + ;;
    fuzz_jws)        find $real/maa-tokens -name "*.jwt" -exec cp -t "$dir" {} + ;
                     cp $real/maa-tokens/jwks/*.json "$dir"/ ;;
    fuzz_attest_request) printf %s "{\"report\":\"e30\",\"runtimeData\":{\"data\":\"e30\",\"dataType\":\"JSON\"},\"nonce\":1}" > "$dir"/minimal.json ;;
    fuzz_vault_request) printf %s "{\"target\":\"a.b.c\",\"enc\":\"RSA_AES_KEY_WRAP_256\"}" > "$dir"/minimal.json ;;
    fuzz_azureguest_request) python3 - "$dir"/shape.json <<'PY' ;;
import base64, json, sys
u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
s = lambda b: base64.b64encode(b).decode()
proof = json.dumps({"SnpReport": u(bytes(1184)), "VcekCertChain": s(b"-----BEGIN CERTIFICATE-----\n")})
tpm = {"AikCert": "MAA=", "AikPub": "AAA=", "PcrQuote": s(bytes.fromhex("ff5443478018")),
       "PcrSignature": "AA==", "EncKeyPub": "AAA=", "EncKeyCertifyInfo": s(bytes.fromhex("ff5443478017")),
       "EncKeyCertifyInfoSignature": "AA==", "PcrSet": [0, 1],
       "PCRs": [{"Index": i, "Digest": s(bytes(32))} for i in (0, 1)]}
info = {"AttestationProtocolVersion": "2.0", "OSType": s(b"Linux"), "OSDistro": s(b"Ubuntu"),
        "OSVersionMajor": 24, "OSVersionMinor": "4", "OSBuild": s(b"NotApplication"), "TcgLogs": "",
        "ClientPayload": {"nonce": "QURFMDEwMQ=="}, "TpmInfo": tpm,
        "IsolationInfo": {"Type": "SevSnp", "Evidence": {"Proof": s(proof.encode()), "RunTimeData": u(b'{"keys":[]}')}}}
open(sys.argv[1], "w").write(json.dumps({"AttestationInfo": u(json.dumps(info).encode())}))
PY
    fuzz_luks2_header) cp tests/fixtures/luks2/aes-xts-512.hdr "$dir"/ ;;
    fuzz_key_hsm)    cp $real/thomvanl-skr-sample/sample-responses/3-keyvault-release-key-decoded/key_hsm-decoded.json "$dir"/ ;;
    fuzz_imds_token) printf %s '{"access_token":"eyJ0eXAi.eyJhdWQi.c2ln","refresh_token":"","expires_in":"3599","expires_on":"1506484173","not_before":"1506480273","resource":"https://vault.azure.net/","token_type":"Bearer"}' > "$dir"/documented.json ;
                     printf %s '{"error":"invalid_resource","error_description":"AADSTS500011"}' > "$dir"/error.json ;;
    fuzz_openid_config) printf %s '{"jwks_uri":"https://sharedeus2.eus2.attest.azure.net/certs","issuer":"https://sharedeus2.eus2.attest.azure.net","response_types_supported":["token","none"],"id_token_signing_alg_values_supported":["RS256"],"revocation_endpoint":"https://sharedeus2.eus2.attest.azure.net/revocations"}' > "$dir"/sharedeus2.json ;;
    fuzz_luks_token) printf %s '{"type":"azure-skr","keyslots":["1"],"skrd_token_version":1,"key_url":"https://v.vault.azure.net/keys/disk","key_version":"v1","kdf":"skrd luks2 v1","volume":"data","created_at":1}' > "$dir"/token.json
                     printf %s '1a2b3c4d5e6f7081/cryptsetup/data' > "$dir"/peer.txt ;;
    fuzz_maa_envelope) printf %s '{"Jwt":"76kOqre2QpeBHsHT/KfgV9m4Vz3/WEEQ4Gpx2zk2h07421Se0oTVXn4IlNOP","EncryptedInnerKey":"fJUiCFc4vO214/qAzvp2dYUrWcgtpIdU","EncryptionParams":{"BlockMode":"ChainingModeGCM","BlockPadding":"PKCS7","Cipher":"AES","KeySizeInBits":256,"Iv":"eSDcsXBhxCvL2xos"},"AuthenticationData":"qu6gmp2zM7A9bkayAjRAeQ=="}' > "$dir"/envelope.json
                       printf %s '{"token":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}' > "$dir"/plain.json ;;
    *) ;;
esac

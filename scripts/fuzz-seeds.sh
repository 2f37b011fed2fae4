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
    fuzz_attest_request) printf %s "{\"report\":\"e30\",\"runtimeData\":{\"data\":\"e30\",\"dataType\":\"JSON\"},\"nonce\":1}" > "$dir"/minimal.json
                         # The REST shape around a real Milan report, VCEK and AMD chain (virtee-sev).
                         python3 - "$dir"/real-milan.json $real/virtee-sev <<'PY' ;;
import base64, json, sys
u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
d = sys.argv[2]
vcek = base64.encodebytes(open(d + "/vcek_milan.der", "rb").read()).decode()
chain = "-----BEGIN CERTIFICATE-----\n" + vcek + "-----END CERTIFICATE-----\n" + open(d + "/cert_chain_milan").read()
inner = json.dumps({"SnpReport": u(open(d + "/report_milan.bin", "rb").read()), "VcekCertChain": u(chain.encode())}, indent=2)
runtime = json.dumps({"keys": [{"e": "AQAB", "key_ops": ["encrypt"], "kid": "transfer", "kty": "RSA", "n": u(bytes(256))}]})
open(sys.argv[1], "w").write(json.dumps({"report": u(inner.encode()), "runtimeData": {"data": u(runtime.encode()), "dataType": "JSON"}, "nonce": "123"}))
PY
    fuzz_vault_request) printf %s "{\"target\":\"a.b.c\",\"enc\":\"RSA_AES_KEY_WRAP_256\"}" > "$dir"/minimal.json
                        # A release of a real MAA token (§6.1), a create and an import (§6.8).
                        printf '{"target":"%s","enc":"CKM_RSA_AES_KEY_WRAP","nonce":"n1"}' \
                            "$(tr -d '\n' < $real/maa-tokens/jesserc-sevsnp-tee/token-iat1736697400.jwt)" > "$dir"/release-real-token.json
                        printf %s '{"kty":"RSA-HSM","key_size":3072,"key_ops":["encrypt","decrypt"],"attributes":{"exportable":true,"enabled":true,"exp":1900000000},"tags":{"purpose":"disk"},"release_policy":{"contentType":"application/json; charset=utf-8","data":"eyJ2ZXJzaW9uIjoiMS4wLjAiLCJhbnlPZiI6W3siYXV0aG9yaXR5IjoiaHR0cHM6Ly9zaGFyZWRldXMyLmV1czIuYXR0ZXN0LmF6dXJlLm5ldCIsImFsbE9mIjpbeyJjbGFpbSI6IngtbXMtaXNvbGF0aW9uLXRlZS54LW1zLWF0dGVzdGF0aW9uLXR5cGUiLCJlcXVhbHMiOiJzZXZzbnB2bSJ9XX1dfQ","immutable":false}}' > "$dir"/create.json
                        printf %s '{"key":{"kty":"oct-HSM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","key_ops":["wrapKey","unwrapKey"]},"hsm":true,"attributes":{"exportable":true},"release_policy":{"data":"e30"}}' > "$dir"/import-oct.json ;;
    fuzz_http_head) # Request heads as curl, the C++ guest library and skrd send them.
                    printf 'GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%%3A%%2F%%2Fvault.azure.net HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nMetadata: true\r\n\r\n' > "$dir"/imds-token.txt
                    printf 'POST /attest/AzureGuest?api-version=2020-10-01 HTTP/1.1\r\nHost: sharedeus2.eus2.attest.azure.net\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}' > "$dir"/attest.txt
                    printf 'POST /keys/disk/0123456789abcdef0123456789abcdef/release?api-version=7.4 HTTP/1.0\r\nhost: v.vault.azure.net\r\nauthorization: Bearer a.b.c\r\ncontent-type: application/json\r\ncontent-length: 16\r\nconnection: keep-alive\r\n\r\n{"target":"a"}' > "$dir"/release.txt ;;
    fuzz_imds_request) printf 'GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%%3A%%2F%%2Fmanagedhsm.azure.net&msi_res_id=%%2Fsubscriptions%%2F0%%2FresourceGroups%%2Frg%%2Fproviders%%2FMicrosoft.ManagedIdentity%%2FuserAssignedIdentities%%2Fid HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n' > "$dir"/token-msi-res-id.txt
                       printf 'GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net&client_id=0a1b2c3d-0000-4000-8000-000000000001 HTTP/1.1\r\nMetadata: true\r\n\r\n' > "$dir"/token-client-id.txt
                       printf 'GET /metadata/THIM/amd/certification HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n' > "$dir"/thim.txt ;;
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

//! Pieces of skr-emulator: test SNP firmware, swtpm provisioning (owner: evidence).

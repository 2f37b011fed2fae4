//! Configuration: fragments → merged → validated settings (owner: config).

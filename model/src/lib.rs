//! Language and vision-language models for sftvsrl, written once and generic over Burn backends.

pub mod device;

//! Byte-level vectors through the public API: the dataplane.md §9.2 chain (RFC 7748 keys →
//! tunnel key → a PILS carrying packet P1 → P1) and the §9.2 PILA built from the RFC 8032 key.

use pilot_proto::crypto::{SessionCipher, X25519Secret};
use pilot_proto::identity::Identity;
use pilot_proto::wire::tunnel::{
    AuthKeyExchangeRepr, Nonce, SEALED_HEADER_LEN, TunnelRepr, auth_signed_message,
};

fn array<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text).unwrap().try_into().unwrap()
}

const A_SECRET: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const B_SECRET: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const P1: &str = "11010000000000000001000000000002c00003e800000000000000000200145ed874";
const PILS_P1: &str = concat!(
    "50494c5300000001a1a2a3a40000000000000001d52fce1fb819d552c48b1e34f59bd67010a58a5287c2",
    "bdf7f21e7fad6efe0761f75ac91446eec564eaee12fac147950aa682"
);

#[test]
fn pils_from_a_fixed_key_and_nonce_decrypts_to_the_known_packet() {
    // Both ends derive the same key: one key for both directions in v0.5.
    let a = X25519Secret::from_bytes(array(A_SECRET));
    let b = X25519Secret::from_bytes(array(B_SECRET));
    let key = a.agree(&b.public_key()).unwrap();
    assert_eq!(key.as_bytes(), b.agree(&a.public_key()).unwrap().as_bytes());

    let mut frame = hex::decode(PILS_P1).unwrap();
    let Ok(TunnelRepr::Sealed(sealed)) = TunnelRepr::parse(&frame) else {
        panic!("not PILS")
    };
    assert_eq!(
        sealed.nonce,
        Nonce {
            prefix: [0xa1, 0xa2, 0xa3, 0xa4],
            counter: 1
        }
    );
    let nonce = sealed.nonce;
    let cipher = SessionCipher::new(&key);
    let packet = cipher
        .open_in_place(nonce, &mut frame[SEALED_HEADER_LEN..])
        .unwrap();
    assert_eq!(hex::encode(packet), P1);
}

#[test]
fn pila_from_the_rfc8032_key_matches_the_spec_signature() {
    let identity = Identity::from_seed(&array(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    ));
    let public_key = X25519Secret::from_bytes(array(A_SECRET)).public_key();
    let signature = identity
        .sign(&auth_signed_message(1, &public_key))
        .to_bytes();
    assert_eq!(
        hex::encode(signature),
        concat!(
            "880af5e2ce0d44fc98432c2ff8c867567f42f442cd9e00c298199823844f1e7d",
            "54c5560c7c7480b2f90855b73178c665295538bd30e521f794c494e793e7610d"
        )
    );
    let repr = AuthKeyExchangeRepr {
        sender: 1,
        public_key,
        signing_key: identity.public_key_bytes(),
        signature,
    };
    let mut frame = [0u8; 136];
    assert_eq!(TunnelRepr::AuthKeyExchange(repr).emit(&mut frame), Ok(136));
    assert_eq!(hex::encode(&frame[..8]), "50494c4100000001");
    assert_eq!(
        hex::encode(&frame[40..72]),
        hex::encode(identity.public_key_bytes())
    );
}

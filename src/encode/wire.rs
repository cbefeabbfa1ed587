//! Protobuf wire helpers for the fields an encoder writes straight from borrowed text:
//! label pairs and attributes cost a `String` each through a derived message, and they are
//! most of a series.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

/// The encoded length of string field `tag` holding `text`.
pub(crate) fn string_len(tag: u32, text: &str) -> usize {
    key_len(tag) + encoded_len_varint(text.len() as u64) + text.len()
}

/// Writes string field `tag`.
pub(crate) fn string(tag: u32, text: &str, buf: &mut Vec<u8>) {
    head(tag, text.len(), buf);
    buf.extend_from_slice(text.as_bytes());
}

/// Writes the key and length of a length-delimited field `tag` whose `len` bytes follow.
pub(crate) fn head(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// The encoded length of message field `tag` whose body is `len` bytes.
#[cfg(feature = "otlp")]
pub(crate) fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Writes field `tag` holding a message of two string fields, 1 = `name` and 2 = `value`:
/// a Prometheus label pair, as `LabelPair` and `Label` declare it.
pub(crate) fn pair(tag: u32, name: &str, value: &str, buf: &mut Vec<u8>) {
    head(tag, string_len(1, name) + string_len(2, value), buf);
    string(1, name, buf);
    string(2, value, buf);
}

/// Writes field `tag` holding an OpenTelemetry `KeyValue` whose value is a string.
#[cfg(feature = "otlp")]
pub(crate) fn attribute(tag: u32, key: &str, value: &str, buf: &mut Vec<u8>) {
    let any = string_len(1, value);
    head(tag, string_len(1, key) + message_len(2, any), buf);
    string(1, key, buf);
    head(2, any, buf);
    string(1, value, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    struct Pair {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Holder {
        #[prost(message, repeated, tag = "3")]
        pairs: Vec<Pair>,
    }

    #[test]
    fn a_hand_written_pair_reads_back_as_the_derived_message() {
        let mut buf = Vec::new();
        let long = "v".repeat(300); // a two-byte length
        pair(3, "method", "GET", &mut buf);
        pair(3, "", &long, &mut buf);
        let read = Holder::decode(buf.as_slice()).expect("valid protobuf");
        assert_eq!(read.pairs.len(), 2);
        assert_eq!(
            (read.pairs[0].name.as_str(), read.pairs[0].value.as_str()),
            ("method", "GET")
        );
        assert_eq!(read.pairs[1].value, long);
    }
}

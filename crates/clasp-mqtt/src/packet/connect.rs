//! Decoding CONNECT, through `rumqttc::mqttbytes`.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use super::{Connect, PacketError, PublishProps, Version, Will};

/// Decodes a framed CONNECT of `version`.
pub(crate) fn decode_connect(version: Version, packet: BytesMut) -> Result<Connect, PacketError> {
    let mut packet = packet;
    let malformed = |e: &dyn std::fmt::Display| PacketError::Malformed(e.to_string());
    match version {
        Version::V4 => match v4::Packet::read(&mut packet, usize::MAX) {
            Ok(v4::Packet::Connect(c)) => {
                let (username, password) = match c.login {
                    Some(l) => (non_empty(l.username), non_empty(l.password)),
                    None => (None, None),
                };
                Ok(Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                    clean: c.clean_session,
                    username,
                    password,
                    will: c.last_will.map(|w| Will {
                        topic: w.topic,
                        payload: w.message,
                        qos: w.qos as u8,
                        retain: w.retain,
                        delay: None,
                        props: None,
                    }),
                    receive_max: None,
                    max_packet: None,
                    topic_alias_max: None,
                    auth_method: false,
                    session_expiry: None,
                })
            }
            Ok(_) => Err(PacketError::Protocol("expected CONNECT".into())),
            Err(e) => Err(malformed(&e)),
        },
        Version::V5 => match v5::Packet::read(&mut packet, None) {
            Ok(v5::Packet::Connect(c, will, login)) => {
                let (username, password) = match login {
                    Some(l) => (non_empty(l.username), non_empty(l.password)),
                    None => (None, None),
                };
                let will = match will {
                    Some(w) => Some(v5_will(w)?),
                    None => None,
                };
                let props = c.properties.unwrap_or_default();
                Ok(Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                    clean: c.clean_start,
                    username,
                    password,
                    will,
                    receive_max: props.receive_maximum,
                    max_packet: props.max_packet_size,
                    topic_alias_max: props.topic_alias_max,
                    auth_method: props.authentication_method.is_some(),
                    session_expiry: props.session_expiry_interval,
                })
            }
            Ok(_) => Err(PacketError::Protocol("expected CONNECT".into())),
            Err(e) => Err(malformed(&e)),
        },
    }
}

fn v5_will(w: v5::LastWill) -> Result<Will, PacketError> {
    let topic = String::from_utf8(w.topic.to_vec())
        .map_err(|_| PacketError::Malformed("will topic is not UTF-8".into()))?;
    let mut delay = None;
    let mut props = None;
    if let Some(p) = w.properties {
        if p.payload_format_indicator.is_some_and(|f| f > 1) {
            return Err(PacketError::Protocol(
                "will payload format not 0 or 1".into(),
            ));
        }
        delay = p.delay_interval;
        let pp = PublishProps {
            payload_format: p.payload_format_indicator,
            message_expiry: p.message_expiry_interval,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user: p.user_properties,
            subscription_ids: Vec::new(),
        };
        props = (!pp.is_empty()).then(|| Box::new(pp));
    }
    Ok(Will {
        topic,
        payload: w.message,
        qos: w.qos as u8,
        retain: w.retain,
        delay,
        props,
    })
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

//! MQTT reason codes as enums: each has its MQTT 5 `code()` and, where 3.1.1 has an
//! equivalent, how it is written there.

/// Declares a reason-code enum with `code()` and `from_code()`.
macro_rules! reasons {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// The MQTT 5 reason code.
            pub(crate) fn code(self) -> u8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// The reason with MQTT 5 code `code`, if it is one of these.
            #[allow(dead_code)]
            pub(crate) fn from_code(code: u8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// Whether this is a failure (code 0x80 or above).
            #[allow(dead_code)]
            pub(crate) fn is_error(self) -> bool {
                self.code() >= 0x80
            }
        }
    };
}

reasons! {
    /// CONNACK reason (MQTT 5 §3.2.2.2); see [`ConnectReason::v4_code`] for 3.1.1.
    ConnectReason {
        /// Connection accepted.
        Success = 0x00,
        /// Unspecified error.
        UnspecifiedError = 0x80,
        /// Malformed packet.
        MalformedPacket = 0x81,
        /// Protocol error.
        ProtocolError = 0x82,
        /// Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// Unsupported protocol version.
        UnsupportedProtocolVersion = 0x84,
        /// Client identifier not valid.
        ClientIdentifierNotValid = 0x85,
        /// Bad user name or password.
        BadUserNameOrPassword = 0x86,
        /// Not authorized.
        NotAuthorized = 0x87,
        /// Server unavailable.
        ServerUnavailable = 0x88,
        /// Server busy.
        ServerBusy = 0x89,
        /// Banned.
        Banned = 0x8A,
        /// Bad authentication method.
        BadAuthenticationMethod = 0x8C,
        /// Topic name invalid (of the will).
        TopicNameInvalid = 0x90,
        /// Packet too large.
        PacketTooLarge = 0x95,
        /// Quota exceeded.
        QuotaExceeded = 0x97,
        /// Payload format invalid (of the will).
        PayloadFormatInvalid = 0x99,
        /// Retain not supported.
        RetainNotSupported = 0x9A,
        /// QoS not supported.
        QosNotSupported = 0x9B,
        /// Use another server.
        UseAnotherServer = 0x9C,
        /// Server moved.
        ServerMoved = 0x9D,
        /// Connection rate exceeded.
        ConnectionRateExceeded = 0x9F,
    }
}

impl ConnectReason {
    /// The MQTT 3.1.1 CONNACK return code (§3.2.2.3): 0 accepted, 1 unacceptable protocol
    /// version, 2 identifier rejected, 3 server unavailable, 4 bad user name or password, 5 not
    /// authorized.
    pub(crate) fn v4_code(self) -> u8 {
        use ConnectReason as C;
        match self {
            C::Success => 0,
            C::UnsupportedProtocolVersion => 1,
            C::ClientIdentifierNotValid => 2,
            C::BadUserNameOrPassword => 4,
            C::NotAuthorized | C::Banned | C::BadAuthenticationMethod => 5,
            _ => 3,
        }
    }
}

reasons! {
    /// PUBACK and PUBREC reason (MQTT 5 §3.4.2.1, §3.5.2.1: both packets use the same codes);
    /// 3.1.1 has none (the packet is sent without it).
    PubAckReason {
        /// Accepted.
        Success = 0x00,
        /// Accepted, but nobody subscribes.
        NoMatchingSubscribers = 0x10,
        /// Unspecified error.
        UnspecifiedError = 0x80,
        /// Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// Not authorized.
        NotAuthorized = 0x87,
        /// Topic name invalid.
        TopicNameInvalid = 0x90,
        /// Packet identifier in use.
        PacketIdentifierInUse = 0x91,
        /// Quota exceeded.
        QuotaExceeded = 0x97,
        /// Payload format invalid.
        PayloadFormatInvalid = 0x99,
    }
}

reasons! {
    /// PUBREL and PUBCOMP reason (MQTT 5 §3.6.2.1, §3.7.2.1); 3.1.1 has none.
    PubCompReason {
        /// Success.
        Success = 0x00,
        /// Packet identifier not found.
        PacketIdentifierNotFound = 0x92,
    }
}

reasons! {
    /// SUBACK reason for one filter (MQTT 5 §3.9.3); see [`SubAckReason::v4_code`] for 3.1.1.
    SubAckReason {
        /// Granted QoS 0.
        GrantedQos0 = 0x00,
        /// Granted QoS 1.
        GrantedQos1 = 0x01,
        /// Granted QoS 2.
        GrantedQos2 = 0x02,
        /// Unspecified error.
        UnspecifiedError = 0x80,
        /// Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// Not authorized.
        NotAuthorized = 0x87,
        /// Topic filter invalid.
        TopicFilterInvalid = 0x8F,
        /// Packet identifier in use.
        PacketIdentifierInUse = 0x91,
        /// Quota exceeded.
        QuotaExceeded = 0x97,
        /// Shared subscriptions not supported.
        SharedSubscriptionsNotSupported = 0x9E,
        /// Subscription identifiers not supported.
        SubscriptionIdentifiersNotSupported = 0xA1,
        /// Wildcard subscriptions not supported.
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

impl SubAckReason {
    /// Granted QoS `qos` (above 2 counts as 2).
    pub(crate) fn granted(qos: u8) -> SubAckReason {
        match qos {
            0 => SubAckReason::GrantedQos0,
            1 => SubAckReason::GrantedQos1,
            _ => SubAckReason::GrantedQos2,
        }
    }

    /// The MQTT 3.1.1 return code (§3.9.3): the granted QoS, or 0x80 for every failure.
    pub(crate) fn v4_code(self) -> u8 {
        if self.is_error() { 0x80 } else { self.code() }
    }
}

reasons! {
    /// UNSUBACK reason for one filter (MQTT 5 §3.11.3); 3.1.1 has none.
    UnsubAckReason {
        /// The subscription is removed.
        Success = 0x00,
        /// There was no such subscription.
        NoSubscriptionExisted = 0x11,
        /// Unspecified error.
        UnspecifiedError = 0x80,
        /// Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// Not authorized.
        NotAuthorized = 0x87,
        /// Topic filter invalid.
        TopicFilterInvalid = 0x8F,
        /// Packet identifier in use.
        PacketIdentifierInUse = 0x91,
    }
}

reasons! {
    /// DISCONNECT reason (MQTT 5 §3.14.2.1); 3.1.1 has no DISCONNECT from the server (the
    /// connection is just closed).
    DisconnectReason {
        /// Normal disconnection.
        Normal = 0x00,
        /// Client: disconnect, and publish the will.
        DisconnectWithWill = 0x04,
        /// Unspecified error.
        UnspecifiedError = 0x80,
        /// Malformed packet.
        MalformedPacket = 0x81,
        /// Protocol error.
        ProtocolError = 0x82,
        /// Implementation specific error.
        ImplementationSpecificError = 0x83,
        /// Not authorized.
        NotAuthorized = 0x87,
        /// Server busy.
        ServerBusy = 0x89,
        /// Server shutting down.
        ServerShuttingDown = 0x8B,
        /// Keep alive timeout.
        KeepAliveTimeout = 0x8D,
        /// Session taken over.
        SessionTakenOver = 0x8E,
        /// Topic filter invalid.
        TopicFilterInvalid = 0x8F,
        /// Topic name invalid.
        TopicNameInvalid = 0x90,
        /// Receive maximum exceeded.
        ReceiveMaximumExceeded = 0x93,
        /// Topic alias invalid.
        TopicAliasInvalid = 0x94,
        /// Packet too large.
        PacketTooLarge = 0x95,
        /// Message rate too high.
        MessageRateTooHigh = 0x96,
        /// Quota exceeded.
        QuotaExceeded = 0x97,
        /// Administrative action.
        AdministrativeAction = 0x98,
        /// Payload format invalid.
        PayloadFormatInvalid = 0x99,
        /// Retain not supported.
        RetainNotSupported = 0x9A,
        /// QoS not supported.
        QosNotSupported = 0x9B,
        /// Use another server.
        UseAnotherServer = 0x9C,
        /// Server moved.
        ServerMoved = 0x9D,
        /// Shared subscriptions not supported.
        SharedSubscriptionsNotSupported = 0x9E,
        /// Connection rate exceeded.
        ConnectionRateExceeded = 0x9F,
        /// Maximum connect time.
        MaximumConnectTime = 0xA0,
        /// Subscription identifiers not supported.
        SubscriptionIdentifiersNotSupported = 0xA1,
        /// Wildcard subscriptions not supported.
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_map_to_v4() {
        for c in 0..=255u8 {
            if let Some(r) = DisconnectReason::from_code(c) {
                assert_eq!(r.code(), c);
            }
            if let Some(r) = SubAckReason::from_code(c) {
                assert_eq!(r.code(), c);
                assert_eq!(r.v4_code(), if c < 0x80 { c } else { 0x80 });
            }
            if let Some(r) = PubAckReason::from_code(c) {
                assert_eq!(r.code(), c);
            }
        }
        assert_eq!(ConnectReason::BadUserNameOrPassword.v4_code(), 4);
        assert_eq!(ConnectReason::ServerBusy.v4_code(), 3);
        assert_eq!(SubAckReason::granted(1), SubAckReason::GrantedQos1);
        assert!(PubAckReason::NotAuthorized.is_error() && !PubAckReason::Success.is_error());
    }
}

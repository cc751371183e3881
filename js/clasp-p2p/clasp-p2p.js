// P2P for CLASP clients in the browser (protocol.md §11): WebRTC DataChannels between clients,
// signalled through the router, on top of the official JS client (@clasp-to/core) or any
// client with the same four methods (`session`, `subscribe`, `emit`, `unsubscribe`).
//
//   import { P2P } from './clasp-p2p.js';
//   const p2p = await P2P.attach(client, { routing: 'prefer-p2p' });
//   p2p.addEventListener('connected', (e) => p2p.send(e.detail.peer, 'hi'));
//   p2p.addEventListener('data', (e) => console.log(e.detail.data, e.detail.route));
//   await p2p.connect(otherSessionId);
//
// Two channels per peer, as the Rust client (`clasp_client::p2p`) makes them: `clasp`
// (unordered, no retransmits) and `clasp-reliable` (ordered, reliable). Routing modes:
// `prefer-p2p` (direct when connected, else through the router), `p2p-only`, `server-only`.
// Through the router, data travels as a `relay` signal to the peer's session only, which the
// Rust client understands too. ICE candidates are trickled as they come and kept when they
// arrive before the offer; simultaneous offers resolve to one connection (the smaller session
// id yields). No build step: this file is the module.

const ANNOUNCE = '/clasp/p2p/announce';
const LEAVE = '/clasp/p2p/leave';
const RELIABLE = 'clasp-reliable';
const UNRELIABLE = 'clasp';
const signalAddress = (session) => `/clasp/p2p/signal/${session}`;

/** Routing modes. */
export const Routing = Object.freeze({ PreferP2P: 'prefer-p2p', P2POnly: 'p2p-only', ServerOnly: 'server-only' });

function uuid() {
  return globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

function bytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new TextEncoder().encode(String(data));
}

/** One peer connection. */
class Peer {
  constructor(id, correlation) {
    this.id = id;
    this.correlation = correlation;
    this.pc = null;
    this.channels = { reliable: null, unreliable: null };
    this.pendingCandidates = [];
    this.remoteSet = false;
    this.open = false;
    this.timer = null;
  }
}

/**
 * P2P on a connected CLASP client. Events (CustomEvent `detail`): `peer-announced` {peer},
 * `connected` {peer}, `data` {peer, data: Uint8Array, reliable, route: 'direct'|'router'},
 * `disconnected` {peer, reason}, `connection-failed` {peer, reason}.
 */
export class P2P extends EventTarget {
  /**
   * Attaches to `client` (connected: its `session` is known) and announces it.
   * Config: `iceServers` (RTCIceServer list; none by default: nothing leaves the local
   * networks), `relayOnly` (only TURN-relayed candidates: peers never learn each other's
   * addresses), `routing` (default `prefer-p2p`), `connectTimeout` (ms, default 30000).
   */
  static async attach(client, config = {}) {
    const p2p = new P2P(client, config);
    await p2p.#start();
    return p2p;
  }

  #client; #config; #peers = new Map(); #known = new Set(); #unsubs = [];

  constructor(client, config) {
    super();
    this.#client = client;
    this.#config = { iceServers: [], relayOnly: false, routing: Routing.PreferP2P, connectTimeout: 30000, ...config };
  }

  /** This client's session id. */
  get session() { return this.#client.session; }

  /** Peers that announced themselves (session ids). */
  get announced() { return [...this.#known]; }

  /** Whether a direct connection to `peer` is open. */
  isConnected(peer) { return this.#peers.get(peer)?.open === true; }

  async #start() {
    const me = this.session;
    if (!me) throw new Error('the client has no session yet: connect it first');
    const sub = (pattern, f) => {
      const u = this.#client.subscribe(pattern, (value, address) => {
        // Handlers may be async: a failure is reported, never left unhandled.
        Promise.resolve().then(() => f(value, address)).catch((e) => this.#fail(null, String(e)));
      });
      if (typeof u === 'function') this.#unsubs.push(u);
    };
    sub(signalAddress(me), (v) => this.#onSignal(v));
    sub(ANNOUNCE, (v) => this.#onAnnounce(v));
    sub(LEAVE, (v) => {
      const gone = v?.session_id;
      if (gone && this.#peers.has(gone)) this.#close(gone, 'the peer left the router', false);
      this.#known.delete(gone);
    });
    // Let the subscriptions reach the router before announcing.
    await new Promise((r) => setTimeout(r, 50));
    this.#client.emit(ANNOUNCE, { session_id: me, p2p_capable: true, features: ['webrtc', 'reliable', 'unreliable'] });
  }

  #emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  #signal(peer, correlation, body) {
    this.#client.emit(signalAddress(peer), { ...body, from: this.session, correlation_id: correlation });
  }

  #onAnnounce(v) {
    const peer = v?.session_id;
    if (!peer || peer === this.session || this.#known.has(peer)) return;
    this.#known.add(peer);
    this.#emit('peer-announced', { peer });
  }

  /** Opens a direct connection to `peer` (we offer); resolves when the offer is sent. */
  async connect(peer) {
    const held = this.#peers.get(peer);
    // A connection in progress or open stays; a placeholder (candidates that came without an
    // offer) gives way.
    if (held?.pc) return;
    const p = new Peer(peer, `${this.session}-${peer}-${uuid()}`);
    this.#peers.set(peer, p);
    this.#setup(p, true);
    p.channels.unreliable = p.pc.createDataChannel(UNRELIABLE, { ordered: false, maxRetransmits: 0 });
    p.channels.reliable = p.pc.createDataChannel(RELIABLE, { ordered: true });
    for (const ch of [p.channels.unreliable, p.channels.reliable]) this.#wire(p, ch);
    try {
      const offer = await p.pc.createOffer();
      await p.pc.setLocalDescription(offer);
    } catch (e) {
      // Replaced meanwhile (the peer's offer won a glare): nothing to report.
      if (this.#peers.get(peer) !== p) return;
      throw e;
    }
    if (this.#peers.get(peer) !== p) return;
    this.#signal(peer, p.correlation, { type: 'offer', sdp: p.pc.localDescription.sdp });
  }

  #setup(p, offering) {
    const pc = new RTCPeerConnection({
      iceServers: this.#config.iceServers,
      iceTransportPolicy: this.#config.relayOnly ? 'relay' : 'all',
    });
    p.pc = pc;
    p.offering = offering;
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) {
        this.#signal(p.id, p.correlation, { type: 'ice_candidate', candidate: JSON.stringify(e.candidate.toJSON()) });
      }
    };
    pc.ondatachannel = (e) => {
      const ch = e.channel;
      if (ch.label === RELIABLE) p.channels.reliable = ch;
      else if (ch.label === UNRELIABLE) p.channels.unreliable = ch;
      this.#wire(p, ch);
    };
    pc.onconnectionstatechange = () => {
      if (['failed', 'closed'].includes(pc.connectionState) && this.#peers.get(p.id) === p) {
        this.#close(p.id, `connection ${pc.connectionState}`, true);
      }
    };
    p.timer = setTimeout(() => {
      if (!p.open && this.#peers.get(p.id) === p) {
        this.#peers.delete(p.id);
        pc.close();
        this.#emit('connection-failed', { peer: p.id, reason: `no connection within ${this.#config.connectTimeout} ms` });
      }
    }, this.#config.connectTimeout);
  }

  #wire(p, ch) {
    ch.binaryType = 'arraybuffer';
    ch.onopen = () => this.#maybeOpen(p);
    ch.onmessage = (e) => this.#emit('data', {
      peer: p.id, data: bytes(e.data), reliable: ch.label === RELIABLE, route: 'direct',
    });
    ch.onclose = () => {
      if (p.open && this.#peers.get(p.id) === p) this.#close(p.id, 'channel closed', true);
    };
  }

  #maybeOpen(p) {
    const { reliable, unreliable } = p.channels;
    if (p.open || reliable?.readyState !== 'open' || unreliable?.readyState !== 'open') return;
    p.open = true;
    clearTimeout(p.timer);
    this.#signal(p.id, p.correlation, { type: 'connected' });
    this.#emit('connected', { peer: p.id });
  }

  async #onSignal(v) {
    const from = v?.from;
    if (!from || from === this.session) return;
    let p = this.#peers.get(from);
    switch (v.type) {
      case 'offer': {
        if (p && p.offering) {
          // Both offered at once: the smaller session id yields.
          if (this.session > from) return;
          this.#drop(p);
        } else if (p) {
          this.#drop(p);
        }
        // Candidates that came early for this very offer are kept; others were for another.
        const kept = (p?.pendingCandidates ?? []).filter((c) => !v.correlation_id || !c.correlation || c.correlation === v.correlation_id);
        p = new Peer(from, v.correlation_id || `${from}-${this.session}-${uuid()}`);
        p.pendingCandidates = kept;
        this.#peers.set(from, p);
        this.#setup(p, false);
        await p.pc.setRemoteDescription({ type: 'offer', sdp: v.sdp });
        p.remoteSet = true;
        await this.#flushCandidates(p);
        const answer = await p.pc.createAnswer();
        await p.pc.setLocalDescription(answer);
        this.#signal(from, p.correlation, { type: 'answer', sdp: p.pc.localDescription.sdp });
        break;
      }
      case 'answer':
        if (!p || !p.offering || p.remoteSet) return;
        await p.pc.setRemoteDescription({ type: 'answer', sdp: v.sdp });
        p.remoteSet = true;
        await this.#flushCandidates(p);
        break;
      case 'ice_candidate': {
        let init;
        try { init = typeof v.candidate === 'string' && v.candidate.trim().startsWith('{') ? JSON.parse(v.candidate) : { candidate: String(v.candidate), sdpMid: '0', sdpMLineIndex: 0 }; } catch { return; }
        if (!p) {
          // Before the offer: kept (a while) for the connection it will open.
          p = new Peer(from, v.correlation_id);
          this.#peers.set(from, p);
          p.timer = setTimeout(() => { if (this.#peers.get(from) === p && !p.pc) this.#peers.delete(from); }, this.#config.connectTimeout);
        }
        // A candidate of another attempt (a dropped glare offer, an old connection) is ignored.
        if (p.pc && v.correlation_id && p.correlation && v.correlation_id !== p.correlation) return;
        if (p.remoteSet && p.pc) await p.pc.addIceCandidate(init).catch((e) => this.#fail(from, `candidate: ${e}`));
        else if (p.pendingCandidates.length < 64) p.pendingCandidates.push({ ...init, correlation: v.correlation_id });
        break;
      }
      case 'disconnected':
        if (p) this.#close(from, v.reason || 'the peer closed the connection', false);
        break;
      case 'relay': {
        const data = v.data instanceof Uint8Array ? v.data : bytes(v.data ?? '');
        this.#emit('data', { peer: from, data, reliable: v.reliable !== false, route: 'router' });
        break;
      }
      default:
        break; // `connected`, and anything newer, need no action
    }
  }

  async #flushCandidates(p) {
    for (const { correlation, ...c } of p.pendingCandidates.splice(0)) {
      if (correlation && p.correlation && correlation !== p.correlation) continue;
      await p.pc.addIceCandidate(c).catch((e) => this.#fail(p.id, `candidate: ${e}`));
    }
  }

  #fail(peer, reason) { this.#emit('error', { peer, reason }); }

  #drop(p) {
    clearTimeout(p.timer);
    try { p.pc?.close(); } catch { /* closed already */ }
  }

  #close(peer, reason, tell) {
    const p = this.#peers.get(peer);
    if (!p) return;
    this.#peers.delete(peer);
    this.#drop(p);
    if (tell) this.#signal(peer, p.correlation, { type: 'disconnected', reason });
    this.#emit('disconnected', { peer, reason });
  }

  /** Closes the direct connection to `peer` (it is told). */
  disconnect(peer, reason = 'closed by the application') { this.#close(peer, reason, true); }

  /**
   * Sends `data` (bytes or text) to `peer`, on the reliable channel or the unreliable one, by
   * the routing mode; returns the route taken: 'direct' or 'router'.
   */
  send(peer, data, reliable = true) {
    const body = bytes(data);
    const p = this.#peers.get(peer);
    const ch = reliable ? p?.channels.reliable : p?.channels.unreliable;
    const mode = this.#config.routing;
    if (mode !== Routing.ServerOnly && p?.open && ch?.readyState === 'open') {
      ch.send(body);
      return 'direct';
    }
    if (mode === Routing.P2POnly) throw new Error(`no direct connection to ${peer}`);
    this.#signal(peer, p?.correlation ?? `${this.session}-${peer}-relay`, { type: 'relay', data: body, reliable });
    return 'router';
  }

  /** Closes every connection and stops listening. */
  close() {
    for (const peer of [...this.#peers.keys()]) this.#close(peer, 'closed by the application', true);
    for (const u of this.#unsubs) { try { u(); } catch { /* gone */ } }
  }
}

// Randomness, UUIDs and SHA-256 for PKCE. Browsers offer crypto.subtle and randomUUID only in
// a secure context (HTTPS, localhost, 127.0.0.1); a phone reaching a test server over plain
// HTTP on a local network still has getRandomValues, so the rest is done here by hand.

export function randomBytes(length) {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  return bytes;
}

export function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A random version 4 UUID (crypto.randomUUID when the browser offers it). */
export function uuid() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A uniformly random integer from min to max, both included. */
export function randomInt(min, max) {
  const span = max - min + 1;
  const limit = Math.floor(0x100000000 / span) * span;
  const word = new Uint32Array(1);
  do {
    crypto.getRandomValues(word);
  } while (word[0] >= limit);
  return min + (word[0] % span);
}

export function pick(list) {
  return list[randomInt(0, list.length - 1)];
}

/** SHA-256 of bytes: crypto.subtle when available, else the implementation below. */
export async function sha256(bytes) {
  if (globalThis.crypto?.subtle) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  }
  return sha256Portable(bytes);
}

// The SHA-256 constants are the first 32 bits of the fractional parts of the square roots of
// the first 8 primes (initial hash) and of the cube roots of the first 64 primes (rounds).
function firstPrimes(count) {
  const primes = [];
  for (let n = 2; primes.length < count; n += 1) {
    if (primes.every((p) => n % p !== 0)) primes.push(n);
  }
  return primes;
}

function fractionBits(x) {
  return Math.floor((x - Math.floor(x)) * 0x100000000) >>> 0;
}

let constants = null;
function sha256Constants() {
  if (!constants) {
    const primes = firstPrimes(64);
    constants = {
      init: Uint32Array.from(primes.slice(0, 8), (p) => fractionBits(Math.sqrt(p))),
      rounds: Uint32Array.from(primes, (p) => fractionBits(Math.cbrt(p))),
    };
  }
  return constants;
}

const rotr = (x, n) => (x >>> n) | (x << (32 - n));

/** FIPS 180-4 SHA-256, exported so the tests can compare it with the platform's. */
export function sha256Portable(data) {
  const { init, rounds } = sha256Constants();
  const length = data.length;
  const padded = new Uint8Array(Math.ceil((length + 9) / 64) * 64);
  padded.set(data);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length * 8) >>> 0);
  const hash = Uint32Array.from(init);
  const w = new Uint32Array(64);
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i += 1) w[i] = view.getUint32(offset + i * 4);
    for (let i = 16; i < 64; i += 1) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, h] = hash;
    for (let i = 0; i < 64; i += 1) {
      const s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const choice = (e & f) ^ (~e & g);
      const t1 = (h + s1 + choice + rounds[i] + w[i]) >>> 0;
      const s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const majority = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (s0 + majority) >>> 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    hash[0] = (hash[0] + a) >>> 0;
    hash[1] = (hash[1] + b) >>> 0;
    hash[2] = (hash[2] + c) >>> 0;
    hash[3] = (hash[3] + d) >>> 0;
    hash[4] = (hash[4] + e) >>> 0;
    hash[5] = (hash[5] + f) >>> 0;
    hash[6] = (hash[6] + g) >>> 0;
    hash[7] = (hash[7] + h) >>> 0;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  hash.forEach((word, i) => outView.setUint32(i * 4, word));
  return out;
}

// The least work a seal can do in Node, with no library and no YAML: read the input,
// encrypt it with a fresh data key (AES-256-GCM), wrap the data key to an X25519
// recipient the way age does (ephemeral key, ECDH, HKDF-SHA256, ChaCha20-Poly1305, header
// HMAC, payload key), and write the result. Not a valid EnvelopeSecret: bench/startup.ts
// --floor times it next to `node -e 0` to show what issue 17's start-up target leaves for
// envseal's own code. CommonJS, so that no ESM loader is involved.
//
//   node bench/seal-floor.cjs INPUT RECIPIENT_SPKI_DER_BASE64
const fs = require('node:fs');
const crypto = require('node:crypto');

const [input, recipientDer] = process.argv.slice(2);
const plaintext = fs.readFileSync(input);
const dataKey = crypto.randomBytes(32);
const iv = crypto.randomBytes(12);
const gcm = crypto.createCipheriv('aes-256-gcm', dataKey, iv);
const ciphertext = Buffer.concat([gcm.update(plaintext), gcm.final(), gcm.getAuthTag()]);

const recipient = crypto.createPublicKey({ key: Buffer.from(recipientDer, 'base64'), format: 'der', type: 'spki' });
const ephemeral = crypto.generateKeyPairSync('x25519');
const shared = crypto.diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient });
const fileKey = crypto.randomBytes(16);
const hkdf = (key, salt, info) => Buffer.from(crypto.hkdfSync('sha256', key, salt, info, 32));
const chacha = (key, data) => {
  const cipher = crypto.createCipheriv('chacha20-poly1305', key, Buffer.alloc(12), { authTagLength: 16 });
  return Buffer.concat([cipher.update(data), cipher.final(), cipher.getAuthTag()]);
};
const ephemeralShare = ephemeral.publicKey.export({ format: 'der', type: 'spki' }).subarray(12).toString('base64');
const header = `age-encryption.org/v1\n-> X25519 ${ephemeralShare}\n${chacha(hkdf(shared, Buffer.alloc(0), 'age-encryption.org/v1/X25519'), fileKey).toString('base64')}\n---`;
const mac = crypto.createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header')).update(header).digest('base64');
const nonce = crypto.randomBytes(16);
const payload = Buffer.concat([nonce, chacha(hkdf(fileKey, nonce, 'payload'), dataKey)]);
fs.writeSync(1, `${header} ${mac}\n${payload.toString('base64')}\n${iv.toString('base64')}:${ciphertext.toString('base64')}\n`);

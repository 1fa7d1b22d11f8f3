export * from './base64.ts';
export * from './context.ts';
export * from './envelope.ts';
export * from './errors.ts';
export * from './kdf.ts';
export * from './random.ts';

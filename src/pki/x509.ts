// @peculiar/x509 with what it needs before it loads: a Reflect metadata polyfill (for its
// tsyringe container) and a WebCrypto provider (Node's own).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
export const subtle = webcrypto.subtle;

// The DNS proxy: NDS name table answers on DNS_PROXY_ADDR (UDP and TCP), the rest forwarded to
// the resolv.conf nameservers. See server.ts.

export { LocalDnsServer, DEFAULT_DNS_PROXY_ADDR, type LocalDnsServerOptions } from './server.js';
export { dnsServerEnabled, dnsServerOptionsFrom } from './from-config.js';
export { decodeNameTable, encodeNameTable, type NameInfo, type NameTable } from './name-table.js';

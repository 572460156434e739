// An LZ4 codec for kafkajs, which reads only GZIP records without a plugin. Ferry's topics
// are LZ4-compressed (librdkafka's LZ4 frame format). The npm packages for it either need a
// native build (kafkajs-lz4) or decode some of librdkafka's frames wrongly (lz4js 0.2.0
// returned 7,266 bytes for a 6,974-byte batch), so this file carries a small decoder of the
// LZ4 frame format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md):
//
//   const { CompressionTypes, CompressionCodecs } = require('kafkajs');
//   CompressionCodecs[CompressionTypes.LZ4] = require('./lz4-codec');
//
// Consumers only decompress; compress is not needed to read a topic.
'use strict';

function decompressFrame(src) {
  let i = 0;
  const u32 = () => { const v = src.readUInt32LE(i); i += 4; return v; };
  if (u32() !== 0x184d2204) throw new Error('not an LZ4 frame (bad magic number)');
  const flg = src[i++];
  i++; // BD: the block maximum size does not matter to a decoder that grows its output
  const blockChecksums = (flg & 0x10) !== 0;
  const contentSize = (flg & 0x08) !== 0;
  const contentChecksum = (flg & 0x04) !== 0;
  const dictId = (flg & 0x01) !== 0;
  if (contentSize) i += 8;
  if (dictId) i += 4;
  i++; // header checksum
  let out = Buffer.alloc(Math.max(64, src.length * 4));
  let o = 0;
  const ensure = (n) => {
    if (o + n <= out.length) return;
    const grown = Buffer.alloc(Math.max(out.length * 2, o + n));
    out.copy(grown, 0, 0, o);
    out = grown;
  };
  for (;;) {
    const size = u32();
    if (size === 0) break; // end mark
    const stored = (size & 0x80000000) !== 0;
    const len = size & 0x7fffffff;
    const end = i + len;
    if (stored) {
      ensure(len);
      src.copy(out, o, i, end);
      o += len;
      i = end;
    } else {
      while (i < end) {
        const token = src[i++];
        let literals = token >>> 4;
        if (literals === 15) { let b; do { b = src[i++]; literals += b; } while (b === 255); }
        ensure(literals);
        src.copy(out, o, i, i + literals);
        o += literals;
        i += literals;
        if (i >= end) break; // the last sequence has literals only
        const offset = src[i] | (src[i + 1] << 8);
        i += 2;
        if (offset === 0 || offset > o) throw new Error('LZ4 block: a match before the start of the output');
        let matchLen = token & 15;
        if (matchLen === 15) { let b; do { b = src[i++]; matchLen += b; } while (b === 255); }
        matchLen += 4;
        ensure(matchLen);
        for (let k = 0; k < matchLen; k++, o++) out[o] = out[o - offset]; // may overlap
      }
    }
    if (blockChecksums) i += 4;
  }
  if (contentChecksum) i += 4;
  return out.subarray(0, o);
}

module.exports = () => ({
  async compress() {
    throw new Error('this LZ4 codec only decompresses (enough to consume Ferry topics)');
  },
  async decompress(buffer) {
    return decompressFrame(Buffer.from(buffer));
  },
});
module.exports.decompressFrame = decompressFrame;

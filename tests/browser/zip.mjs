// Reading the page's downloaded ZIP files in the browser tests (e2e.mjs, video.mjs).
import assert from 'node:assert/strict';

/** The entries of a ZIP that the page wrote (stored, not compressed, as `archive::zip_stored` makes them):
 * [[name, Buffer]], in order. */
export function unzipStored(zip) {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  assert.ok(end >= 0, 'a zip with an end record');
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  const entries = [];
  for (let i = 0; i < count; i++) {
    assert.equal(zip.readUInt32LE(at), 0x02014b50, 'a central directory entry');
    assert.equal(zip.readUInt16LE(at + 10), 0, 'stored, not compressed');
    const size = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const skip = nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    const name = zip.subarray(at + 46, at + 46 + nameLength).toString('utf8');
    const local = zip.readUInt32LE(at + 42);
    const data = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    entries.push([name, zip.subarray(data, data + size)]);
    at += 46 + skip;
  }
  return entries;
}

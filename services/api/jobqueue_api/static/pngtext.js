// The text a PNG carries in its tEXt or iTXt chunk named ``keyword`` (null if none, or only a
// compressed one): the plots put their text alternative there (atx_analysis.plots.describe). One
// copy for the web page (ui.js) and /docs (docs.js).
"use strict";
window.pngText = function (buf, keyword) {
  var bytes = new Uint8Array(buf), view = new DataView(buf), at = 8;
  var latin = new TextDecoder("latin1"), utf8 = new TextDecoder("utf-8");
  while (at + 8 <= bytes.length) {
    var len = view.getUint32(at), type = latin.decode(bytes.subarray(at + 4, at + 8));
    if (type === "IEND") break;
    var data = bytes.subarray(at + 8, at + 8 + len), nul = data.indexOf(0);
    if ((type === "tEXt" || type === "iTXt") && nul > 0 && latin.decode(data.subarray(0, nul)) === keyword) {
      if (type === "tEXt") return latin.decode(data.subarray(nul + 1));
      if (data[nul + 1] !== 0) return null;  // compressed: not one of ours
      var lang = data.indexOf(0, nul + 3), translated = data.indexOf(0, lang + 1);
      return utf8.decode(data.subarray(translated + 1));
    }
    at += 12 + len;
  }
  return null;
};

INSERT INTO ucs2_text (t, w, h) VALUES ('∆˚ø¨´˚∆ƒ¬ß∂µ≤˜π∑ˆ¨´øßå¬∂˚∆ƒ…¬å˚∆ß', '🚀 x', '𝄞 y');

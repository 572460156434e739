INSERT INTO charsets (g, b, u, s) VALUES ('乪', '圖形碼', '河', 'カタカナ');

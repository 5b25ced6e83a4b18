"""Intervention planning measurements on cardiac CT: TAVR, mitral (TEER/TMVR), pulmonary valve (PPVI) and PCI."""

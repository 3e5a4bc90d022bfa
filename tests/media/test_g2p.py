"""Pronunciations for names: cmudict first, espeak-ng's IPA mapped to ARPAbet for the rest."""

from __future__ import annotations

from ivr.media.g2p import ARPABET, ipa_to_arpabet, normalize_phrase, pronunciations


def test_ipa_maps_to_arpabet() -> None:
    assert ipa_to_arpabet("ʃɪvˈɔːn") == ["SH", "IH", "V", "AO", "N"]
    assert ipa_to_arpabet("dʒˈɑːnsən") == ["JH", "AA", "N", "S", "AH", "N"]
    assert ipa_to_arpabet("zˈuːətʃɚ") == ["Z", "UW", "AH", "CH", "ER"]
    assert ipa_to_arpabet("zˈækɚɹi") == ["Z", "AE", "K", "ER", "IY"]  # ER holds the r
    assert ipa_to_arpabet("dˈaɪəz") == ["D", "AY", "AH", "Z"]
    assert ipa_to_arpabet("tˈɒtt") == ["T", "AA", "T"]  # geminates merged


def test_cmudict_first_then_espeak_variants() -> None:
    prons = pronunciations("nguyen")
    assert prons[0] == "N UW Y EH N"  # cmudict
    assert len(set(prons)) == len(prons)


def test_names_cmudict_lacks_get_valid_phones() -> None:
    for word in ("siobhan", "zurcher", "dvorak", "okonkwo"):
        prons = pronunciations(word)
        assert prons
        assert all(set(p.split()) <= ARPABET for p in prons), prons
    assert "SH IH V AO N" in pronunciations("siobhan")


def test_normalize_phrase() -> None:
    assert normalize_phrase("Anna  Zürcher-Dvořák") == "anna zurcher dvorak"
    assert normalize_phrase("O'Brien") == "obrien"
    assert normalize_phrase("김민준") == "김민준"

"""Dataset adapters: each reads one public dataset's own layout into datalist items or (image, label) lists.

Pre-training datalists: MIMIC-CXR (:mod:`.mimic_cxr`) and BIMCV-COVID19+ (:mod:`.bimcv`), written by
``python -m unimedi_monai.data.prepare``. Classification: COVIDx (:mod:`.covidx`), CheXpert
(:mod:`.chexpert`), RSNA Pneumonia (:mod:`.rsna_pneumonia`). Slice selection: LUNA16 nodule
annotations (:mod:`.luna16`). The modules load on first use.
"""

"""DICOM input: the PS3.3 pixel pipeline by hand-computed values, layouts, labels CSV, metadata, PHI, bad files.

Every file is written here with pydicom (a few hundred bytes each); expected pixel values are worked out
from the standard's formulas in the comments, not taken from the loader.
"""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medaudit.data import dicom, load_dataset
from medaudit.data.images import array_hash
from medaudit.errors import MedauditError, MedauditWarning
from medaudit.phi import hash_identifiers, load_salt

PHI = {"PatientName": "Doe^Jane^Q", "PatientBirthDate": "19480229", "PatientAddress": "12 Elm Street",
       "OtherPatientIDs": "OTHER-5551234"}
RAW_ID = "MRN-0077123"


def write_dcm(path, pixels, *, photometric="MONOCHROME2", bits_stored=None, signed=False, syntax=None,
              pixel_data=True, frames=None, **tags):
    """Write a DICOM file holding ``pixels`` (uint8/uint16/int16, (R, C), (R, C, 3) or (F, R, C))."""
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = tags.pop("SOPInstanceUID", None) or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    colour = photometric in ("RGB", "YBR_FULL")
    shape = pixels.shape[1:] if frames else pixels.shape
    ds.Rows, ds.Columns = shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames:
        ds.NumberOfFrames = frames
    for key, value in tags.items():
        setattr(ds, key, value)
    if pixel_data:
        ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if syntax == RLELossless:
        ds.compress(RLELossless)
    elif syntax is not None:  # any other syntax: an encapsulated frame of bytes no decoder can read
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([b"\xff\xd8 not really compressed \xff\xd9"])
        ds["PixelData"].VR = "OB"
    private = not ds.file_meta.TransferSyntaxUID.is_transfer_syntax
    ds.save_as(path, enforce_file_format=True, **({"implicit_vr": False, "little_endian": True} if private else {}))
    return path


def pixels_of(path, spec_suffix="", tmp=None):
    """The decoded uint8 array of one file, through the public loader (a one-file class folder)."""
    return np.asarray(dicom.decode_dicom(path, dicom.parse_spec(f"dicom:{path.parent}{spec_suffix}")[1])[0])


# -- the pixel pipeline ----------------------------------------------------------------------------------------------
def test_linear_window_matches_the_standard_formula_worked_by_hand():
    # PS3.3 C.11.2.1.2.1, c=40, w=400: below c-0.5-(w-1)/2 = -160 -> 0, above c-0.5+(w-1)/2 = 239 -> 255,
    # else ((x - 39.5)/399 + 0.5) * 255.
    x = np.array([-1000, -160, -159, 0, 40, 239, 240])
    expected = [0, 0, 0.639, 102.256, 127.820, 255, 255]  # -159: 0.5025/399... = 0.00251*255
    np.testing.assert_allclose(dicom.window_linear(x, 40, 400), expected, atol=1e-3)
    # width 1 is a threshold at c - 0.5
    np.testing.assert_array_equal(dicom.window_linear(np.array([9.5, 9.6]), 10, 1), [0, 255])


def test_ct_rescale_then_file_window(tmp_path):
    # stored s, HU = s - 1024: [-160, -159, 0, 40, 239, 1000] -> window 40/400 as above, rounded
    stored = np.array([[864, 865, 1024], [1064, 1263, 2024]], np.uint16)
    path = write_dcm(tmp_path / "ct.dcm", stored, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024,
                     WindowCenter=40, WindowWidth=400)
    im, recipe = dicom.decode_dicom(path)
    assert im.mode == "L" and im.size == (3, 2)
    np.testing.assert_array_equal(np.asarray(im), [[0, 1, 102], [128, 255, 255]])
    assert recipe == "DICOM MONOCHROME2 12-bit, WindowCenter/Width"


def test_slope_and_an_explicit_window_overriding_the_files(tmp_path):
    # slope 2, intercept -100: [0, 50, 100, 150] -> [-100, 0, 100, 200]; window 50/201: ramp from -50.5 to 149.5,
    # y = ((x - 49.5)/200 + 0.5)*255: 0 -> 64.39, 100 -> 191.89
    path = write_dcm(tmp_path / "x" / "s.dcm", np.array([[0, 50, 100, 150]], np.uint16), RescaleSlope=2,
                     RescaleIntercept=-100, WindowCenter=0, WindowWidth=10)
    np.testing.assert_array_equal(pixels_of(path, "?window=50,201"), [[0, 64, 192, 255]])
    # the file's own window 0/10: ramp from -5 to 4, 0 -> ((0 + 0.5)/9 + 0.5)*255 = 141.67; -100 and 100+ saturate
    np.testing.assert_array_equal(pixels_of(path), [[0, 142, 255, 255]])


def test_a_full_image_equals_the_formula_applied_pixel_by_pixel(tmp_path):
    # the decoder maps each distinct stored value once; check it against the formula on every pixel
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 4096, (64, 48)).astype(np.uint16)
    path = write_dcm(tmp_path / "ct.dcm", stored, bits_stored=12, RescaleSlope=0.5, RescaleIntercept=-1024,
                     WindowCenter=-600, WindowWidth=1500)
    expected = np.rint(dicom.window_linear(stored * 0.5 - 1024, -600, 1500)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(dicom.decode_dicom(path)[0]), expected)
    # a non-monotone Modality LUT (0->500, 1->0, 2->1000, 3->200) on stored values {0, 3}: min-max is over the
    # outputs present, [200, 500] (not [0, 1000] of the stored range 0..3): 500 -> 255, 200 -> 0
    lut = Dataset()
    lut.LUTDescriptor, lut.ModalityLUTType = [4, 0, 16], "US"
    lut.add_new("LUTData", "OW", np.array([500, 0, 1000, 200], "<u2").tobytes())
    sparse = write_dcm(tmp_path / "sp.dcm", np.array([[0, 3, 3]], np.uint16), ModalityLUTSequence=[lut])
    np.testing.assert_array_equal(np.asarray(dicom.decode_dicom(sparse)[0]), [[255, 0, 0]])


def test_monochrome1_is_inverted_after_the_window(tmp_path):
    arr = np.array([[0, 100, 2048, 4095]], np.uint16)
    kw = {"bits_stored": 12, "WindowCenter": 2048, "WindowWidth": 4096}
    m2 = np.asarray(dicom.decode_dicom(write_dcm(tmp_path / "m2.dcm", arr, **kw))[0]).astype(int)
    m1 = np.asarray(dicom.decode_dicom(write_dcm(tmp_path / "m1.dcm", arr, photometric="MONOCHROME1", **kw))[0])
    # window 2048/4096: ((x - 2047.5)/4095 + 0.5)*255: 100 -> 6.23, 2048 -> 127.53
    np.testing.assert_array_equal(m2, [[0, 6, 128, 255]])
    np.testing.assert_array_equal(m1, [[255, 249, 127, 0]])


def test_bits_stored_masks_high_bits_and_sign_extends(tmp_path):
    # 12 of 16 bits: junk in the top nibble (overlay planes) is not pixel value; min-max of [0, 4095]
    junk = np.array([[0, 0xF000 | 100, 0x0FFF, 0xA000]], np.uint16)
    im, recipe = dicom.decode_dicom(write_dcm(tmp_path / "u.dcm", junk, bits_stored=12))
    np.testing.assert_array_equal(np.asarray(im), [[0, 6, 255, 0]])  # 100*255/4095 = 6.23
    assert recipe.endswith("12-bit, min-max")
    # signed 12-bit: 0x800 = -2048, 0xFFF = -1, 0x7FF = 2047; min-max over [-2048, 2047]:
    # -1 -> 2047*255/4095 = 127.47, 0 -> 2048*255/4095 = 127.53
    signed = np.array([[0x800, 0xFFF, 0, 0x7FF]], np.uint16)
    im = dicom.decode_dicom(write_dcm(tmp_path / "s.dcm", signed, bits_stored=12, signed=True))[0]
    np.testing.assert_array_equal(np.asarray(im), [[0, 127, 128, 255]])


def test_voi_lut_sequence_scaled_from_its_bit_depth(tmp_path):
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 16]  # 4 entries, first input value 0, 16-bit output
    lut.add_new("LUTData", "OW", np.array([0, 1000, 30000, 65535], "<u2").tobytes())
    path = write_dcm(tmp_path / "lut.dcm", np.array([[0, 1, 2, 3, 9]], np.uint16), VOILUTSequence=[lut],
                     WindowCenter=0, WindowWidth=2)  # the LUT comes first; inputs past the end take the last entry
    im, recipe = dicom.decode_dicom(path)
    # v * 255/65535: 1000 -> 3.89, 30000 -> 116.73
    np.testing.assert_array_equal(np.asarray(im), [[0, 4, 117, 255, 255]])
    assert recipe.endswith("VOI LUT")


def test_rgb_is_kept(tmp_path):
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 13
    im, recipe = dicom.decode_dicom(write_dcm(tmp_path / "c.dcm", rgb, photometric="RGB"))
    assert im.mode == "RGB" and recipe == "DICOM RGB 8-bit"
    np.testing.assert_array_equal(np.asarray(im), rgb)


def test_multi_frame_refused_unless_a_frame_is_chosen(tmp_path):
    frames = np.stack([np.full((2, 2), v, np.uint16) for v in (10, 20, 30)])
    frames[:, 0, 0] = 0  # so min-max has a range: each frame is [0, v]
    frames[1, 1, 1] = 40
    write_dcm(tmp_path / "a" / "f.dcm", frames, frames=3)
    write_dcm(tmp_path / "b" / "g.dcm", np.array([[0, 1]], np.uint16))
    ds = load_dataset(str(tmp_path))
    with pytest.raises(MedauditError, match=r"f\.dcm: a multi-frame DICOM \(3 frames\); choose one .*frame=K"):
        ds.split("all").load_image(0)
    ds = load_dataset(f"dicom:{tmp_path}?frame=1")
    # frame 1 = [[0, 20], [20, 40]] -> min-max [0, 40]
    np.testing.assert_array_equal(np.asarray(ds.split("all").load_image(0)), [[0, 128], [128, 255]])
    assert ds.split("all").image_stats()[1]["DICOM MONOCHROME2 16-bit, frame 1, min-max"] == 1
    with pytest.raises(MedauditError, match="frame 5 chosen but the file has 3 frame"):
        load_dataset(f"dicom:{tmp_path}?frame=5").split("all").verify()


def test_rle_compressed_decodes_to_the_same_pixels_and_hash(tmp_path):
    arr = np.arange(64, dtype=np.uint16).reshape(8, 8) * 60
    plain = write_dcm(tmp_path / "a" / "plain.dcm", arr, bits_stored=12)
    rle = write_dcm(tmp_path / "b" / "rle.dcm", arr, bits_stored=12, syntax=RLELossless)
    assert pydicom.dcmread(rle).file_meta.TransferSyntaxUID == RLELossless
    a, b = (np.asarray(dicom.decode_dicom(p)[0]) for p in (plain, rle))
    np.testing.assert_array_equal(a, b)
    hashes = load_dataset(str(tmp_path)).split("all").content_hashes()
    assert hashes[0] == hashes[1] == array_hash(a)


def test_a_compressed_syntax_without_decoder_is_refused_by_name(tmp_path):
    path = write_dcm(tmp_path / "ls.dcm", np.zeros((4, 4), np.uint16), syntax=JPEGLSLossless)
    if get_decoder(JPEGLSLossless).is_available:  # a JPEG-LS plugin is installed: the bytes are still not JPEG-LS
        match = r"ls\.dcm: cannot decode DICOM pixel data \(JPEG-LS Lossless"
    else:
        match = r"ls\.dcm: pixel data compressed as JPEG-LS Lossless Image Compression \(1\.2\.840\.10008\.1\.2\.4\.80\)"
    with pytest.raises(MedauditError, match=match):
        dicom.decode_dicom(path)


def test_an_unknown_transfer_syntax_is_refused(tmp_path):
    path = write_dcm(tmp_path / "x.dcm", np.zeros((2, 2), np.uint16), syntax=UID("1.2.826.0.1.3680043.99.1"))
    with pytest.raises(MedauditError, match=r"x\.dcm: unsupported transfer syntax 1\.2\.826\.0\.1\.3680043\.99\.1"):
        dicom.decode_dicom(path)


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    write_dcm(tmp_path / "a" / "ok.dcm", np.zeros((2, 2), np.uint16))
    write_dcm(tmp_path / "b" / "sr.dcm", np.zeros((2, 2), np.uint16), pixel_data=False)
    split = load_dataset(str(tmp_path)).split("all")  # headers are fine: the missing pixels show on decoding
    with pytest.raises(MedauditError, match=r"b/sr\.dcm: DICOM file holds no pixel data"):
        split.verify()
    with pytest.raises(MedauditError, match="holds no pixel data"):
        split.fingerprint()  # the cache key needs every image: nothing is dropped
    (tmp_path / "b" / "junk.dcm").write_bytes(b"this is a PNG renamed, honest" * 10)
    with pytest.raises(MedauditError, match=r"b/junk\.dcm: not a DICOM file") as exc:
        load_dataset(str(tmp_path))
    assert "\n" not in str(exc.value)


def test_uncommon_photometric_and_window_values_are_refused(tmp_path):
    with pytest.raises(MedauditError, match="'PALETTE COLOR' is not supported"):
        dicom.decode_dicom(write_dcm(tmp_path / "p.dcm", np.zeros((2, 2), np.uint8), photometric="PALETTE COLOR"))
    with pytest.raises(MedauditError, match=r"WindowWidth 0\.5 is not a valid width"):
        dicom.decode_dicom(write_dcm(tmp_path / "w.dcm", np.zeros((2, 2), np.uint16), WindowCenter=0, WindowWidth=0.5))
    with pytest.raises(MedauditError, match="VOILUTFunction 'CURVY'"):
        dicom.decode_dicom(write_dcm(tmp_path / "f.dcm", np.zeros((2, 2), np.uint16), WindowCenter=0, WindowWidth=9,
                                     VOILUTFunction="CURVY"))


def test_sigmoid_and_linear_exact_functions(tmp_path):
    x = np.array([[0, 10, 20]], np.uint16)
    # SIGMOID c=10, w=20: 255/(1+exp(-4(x-10)/20)): 0 -> 255/(1+e^2) = 30.41, 10 -> 127.5, 20 -> 224.59
    sig = dicom.decode_dicom(write_dcm(tmp_path / "s.dcm", x, WindowCenter=10, WindowWidth=20,
                                       VOILUTFunction="SIGMOID"))[0]
    np.testing.assert_array_equal(np.asarray(sig), [[30, 128, 225]])
    # LINEAR_EXACT c=10, w=20: (x-10)/20*255 clipped: 0 -> 0 (-127.5), 10 -> 0, 20 -> 127.5
    ex = dicom.decode_dicom(write_dcm(tmp_path / "e.dcm", x, WindowCenter=10, WindowWidth=20,
                                      VOILUTFunction="LINEAR_EXACT"))[0]
    np.testing.assert_array_equal(np.asarray(ex), [[0, 0, 128]])


# -- layouts and labels ----------------------------------------------------------------------------------------------
def test_class_folders_and_split_folders_as_for_images(tmp_path):
    for i, (split, cls) in enumerate([("Training", "a"), ("Training", "b"), ("Training", "b"), ("Testing", "a"),
                                      ("Testing", "b")]):
        write_dcm(tmp_path / split / cls / f"p{i}" / f"{i}.dcm", np.array([[0, i + 1]], np.uint16))
    ds = load_dataset(str(tmp_path))
    assert list(ds.splits) == ["train", "test"] and ds.class_names == ["a", "b"] and ds.task == "binary"
    train = ds.split("train")
    assert isinstance(train, dicom.DicomSplit)
    assert train.sample_ids == ["Training/a/p0/0.dcm", "Training/b/p1/1.dcm", "Training/b/p2/2.dcm"]
    assert train.labels.tolist() == [0, 1, 1]
    assert load_dataset(str(tmp_path), classes=["b", "a"]).split("test").labels.tolist() == [1, 0]
    sub = train.subset([2, 0], "val (carved from train)")
    assert isinstance(sub, dicom.DicomSplit) and sub.sample_ids == ["Training/b/p2/2.dcm", "Training/a/p0/0.dcm"]
    assert np.asarray(sub.load_image(0)).tolist() == [[0, 255]]
    assert sub.metadata["study_year"].shape == (2,)


def test_mixing_dicom_and_images_is_refused_and_other_files_warned(tmp_path):
    write_dcm(tmp_path / "a" / "x.dcm", np.zeros((2, 2), np.uint16))
    write_dcm(tmp_path / "b" / "y.dcm", np.zeros((2, 2), np.uint16))
    (tmp_path / "b" / "notes.txt").write_text("reader notes")
    with pytest.warns(MedauditWarning, match=r"b: ignored 1 non-DICOM file file\(s\)"):
        load_dataset(str(tmp_path))
    from PIL import Image

    Image.new("L", (2, 2)).save(tmp_path / "a" / "z.png")
    with pytest.raises(MedauditError, match=r"holds both DICOM files and 1 other image\(s\) \(e\.g\. a/z\.png\)"):
        load_dataset(str(tmp_path))


def test_labels_csv_keyed_by_path_or_sop_instance_uid(tmp_path):
    uids = {}
    for i in range(4):
        uids[i] = generate_uid()
        write_dcm(tmp_path / "scans" / f"{i}.dcm", np.array([[0, 10 * (i + 1)]], np.uint16), SOPInstanceUID=uids[i])
    (tmp_path / "scans" / "by_path.csv").write_text(
        "path,label,split\n0.dcm,sick,train\n1.dcm,well,train\n./2.dcm,sick,test\n3.dcm,well,test\n")
    ds = load_dataset(f"dicom:{tmp_path / 'scans'}?labels=by_path.csv")
    assert ds.class_names == ["sick", "well"] and list(ds.splits) == ["train", "test"]
    assert ds.split("test").sample_ids == ["2.dcm", "3.dcm"] and ds.split("test").labels.tolist() == [0, 1]
    csv_uid = tmp_path / "uid.csv"
    csv_uid.write_text("SOPInstanceUID,label\n" + "".join(f"{uids[i]},{'ab'[i % 2]}\n" for i in (3, 1, 0, 2)))
    split = load_dataset(f"dicom:{tmp_path / 'scans'}?labels={csv_uid}").split("all")
    assert split.sample_ids == ["0.dcm", "1.dcm", "2.dcm", "3.dcm"] and split.labels.tolist() == [0, 1, 0, 1]
    csv_uid.write_text(f"sop_instance_uid,label\n{uids[0]},a\n{uids[1]},b\n")
    with pytest.raises(MedauditError, match=r"2 DICOM file\(s\) have no row in uid\.csv \(e\.g\. 2\.dcm\)"):
        load_dataset(f"dicom:{tmp_path / 'scans'}?labels={csv_uid}")
    csv_uid.write_text(f"sop_instance_uid,label\n{uids[0]},a\n1.2.3,b\n")
    with pytest.raises(MedauditError, match=r"uid\.csv:3: no DICOM file under .* has SOPInstanceUID 1\.2\.3"):
        load_dataset(f"dicom:{tmp_path / 'scans'}?labels={csv_uid}")
    (tmp_path / "scans" / "up.csv").write_text("path,label\n../x.dcm,a\n")
    with pytest.raises(MedauditError, match=r"up\.csv:2: path '\.\./x\.dcm' uses '\.\.'"):
        load_dataset(f"dicom:{tmp_path / 'scans'}?labels=up.csv")


@pytest.mark.parametrize("suffix, fragment", [
    ("?level=3", "unknown DICOM option 'level=3'"),
    ("?window=40", "window='40'; give the center and width"),
    ("?window=40,0", "window width 0 must be a finite number >= 1"),
    ("?frame=-1", "frame='-1'; give a 0-based frame number"),
    ("?labels=nope.csv", "labels file .*nope.csv not found"),
])
def test_spec_errors_name_the_data_option(tmp_path, suffix, fragment):
    write_dcm(tmp_path / "a" / "x.dcm", np.zeros((2, 2), np.uint16))
    with pytest.raises(MedauditError, match=fragment) as exc:
        load_dataset(f"dicom:{tmp_path}{suffix}")
    assert exc.value.param == "data"


# -- metadata and PHI -----------------------------------------------------------------------------------------------
def test_metadata_columns_from_the_listed_tags(tmp_path):
    write_dcm(tmp_path / "a" / "1.dcm", np.zeros((2, 2), np.uint16), PatientID=RAW_ID, PatientSex="F",
              PatientAge="065Y", Manufacturer="ACME", ManufacturerModelName="Ray 9", InstitutionName="Site North",
              BodyPartExamined="CHEST", ViewPosition="PA", StudyDate="20190304", **PHI)
    write_dcm(tmp_path / "a" / "2.dcm", np.ones((2, 2), np.uint16), PatientID=RAW_ID, PatientAge="006M")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom warns about the invalid values as they are set
        write_dcm(tmp_path / "b" / "3.dcm", np.zeros((2, 2), np.uint16) + 2, PatientAge="2 years",
                  StudyDate="unknown")
    with pytest.warns(MedauditWarning, match=r"unreadable 1 PatientAge, 1 StudyDate value\(s\) counted as unknown"):
        ds = load_dataset(str(tmp_path))
    meta = ds.split("all").metadata
    assert ds.patient_column == "patient_id"
    assert set(meta) == set(dicom.METADATA_TAGS)
    expected_hash = hash_identifiers([RAW_ID], load_salt())[0]
    assert meta["patient_id"].tolist() == [expected_hash, expected_hash, ""]
    assert meta["sex"].tolist() == ["F", "", ""]
    np.testing.assert_allclose(meta["age"], [65.0, 0.5, np.nan])
    np.testing.assert_allclose(meta["study_year"], [2019.0, np.nan, np.nan])
    assert meta["manufacturer"].tolist() == ["ACME", "", ""] and meta["model"][0] == "Ray 9"
    assert (meta["institution"][0], meta["body_part"][0], meta["view"][0]) == ("Site North", "CHEST", "PA")
    assert meta["age"].dtype == np.float64 and meta["sex"].dtype.kind == "U"


def test_no_patient_ids_means_no_patient_column(tmp_path):
    write_dcm(tmp_path / "a" / "1.dcm", np.zeros((2, 2), np.uint16))
    write_dcm(tmp_path / "b" / "2.dcm", np.zeros((2, 2), np.uint16))
    ds = load_dataset(str(tmp_path))
    assert ds.patient_column is None and ds.split("all").metadata["patient_id"].tolist() == ["", ""]


@pytest.mark.parametrize("text, years", [("065Y", 65.0), ("018M", 1.5), ("052W", 52 * 7 / 365.25),
                                         ("003D", 3 / 365.25), ("65", np.nan), ("", np.nan), ("0x5Y", np.nan)])
def test_age_strings(text, years):
    np.testing.assert_allclose(dicom.parse_age(text), years)


def test_only_the_listed_tags_are_ever_parsed(tmp_path, monkeypatch):
    """Every dcmread medaudit makes names its tags, and what it returns holds no name, birth date or address."""
    for cls in "ab":
        write_dcm(tmp_path / cls / "x.dcm", np.zeros((2, 2), np.uint16), PatientID=RAW_ID, **PHI)
    real, seen = pydicom.dcmread, []

    def spy(*args, **kwargs):
        ds = real(*args, **kwargs)
        seen.append((kwargs.get("specific_tags"), [e.keyword for e in ds.iterall()]))
        return ds

    monkeypatch.setattr(pydicom, "dcmread", spy)
    split = load_dataset(str(tmp_path)).split("all")
    split.fingerprint()
    split.load_image(1)
    assert len(seen) == 2 + 2 + 1  # headers at load, pixels for the hashes, one more image
    for tags, keywords in seen:
        assert tags is not None
        assert not {"PatientName", "PatientBirthDate", "PatientAddress", "OtherPatientIDs"} & set(keywords)
    assert "PatientID" in seen[0][1] and "PatientID" not in seen[-1][1]  # the pixel read skips even the id


def test_phi_never_reaches_predictions_or_the_report(tmp_path):
    import torch

    from medaudit.audit import AuditSettings
    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe
    from medaudit.pipeline import ReportOptions, run_report

    rng = np.random.default_rng(0)
    for i in range(6):
        write_dcm(tmp_path / "data" / "test" / "ab"[i % 2] / f"{i}.dcm", rng.integers(0, 4096, (16, 16), np.uint16),
                  bits_stored=12, PatientID=f"{RAW_ID}{i % 3}", PatientSex="MF"[i % 2], **PHI)
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, create_model("resnet18", 2, img_size=16), arch="resnet18", class_names=["a", "b"],
                    task="binary", recipe=Recipe(img_size=16), small_stem=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedauditWarning)  # no val split: nothing chosen, as intended here
        snapshot, paths = run_report(ReportOptions(
            checkpoints=[ckpt], data_spec=str(tmp_path / "data"), out_dir=tmp_path / "rep",
            settings=AuditSettings(bootstrap=0), bench=False, cam=False, formats=("json",)))
    assert len(snapshot["models"]) == 1 and json.loads(paths["json"].read_text())["models"]
    written = [p for p in (tmp_path / "rep").rglob("*") if p.is_file()]
    assert any(p.suffix == ".npz" for p in written) and paths["json"] in written
    from medaudit.predictions import Predictions

    preds = Predictions.load(next(p for p in written if p.suffix == ".npz"))
    # the metadata did travel (hashed ids, sex), so the absence below is not for want of metadata
    assert set(preds.metadata["patient_id"]) == set(hash_identifiers([f"{RAW_ID}{k}" for k in range(3)], load_salt()))
    assert sorted(preds.metadata["sex"]) == ["F"] * 3 + ["M"] * 3
    needles = [v.encode() for v in (*PHI.values(), RAW_ID, "Doe", "19480229")]
    for path in written:
        blobs = [path.read_bytes()]
        if path.suffix == ".npz":  # compressed members: search what they hold, not the deflated bytes
            with zipfile.ZipFile(path) as zf:
                blobs += [zf.read(n) for n in zf.namelist()]
        for needle in needles:
            for blob in blobs:
                assert needle not in blob and needle.decode().encode("utf-32-le") not in blob, \
                    f"{needle!r} found in {path.name}"


def test_the_pixel_recipe_is_recorded_in_the_dataset_block(tmp_path):
    from medaudit.data.inspect import inspect_dataset

    for i, (split, cls) in enumerate([("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")]):
        write_dcm(tmp_path / split / cls / f"{i}.dcm", np.array([[0, i + 1]], np.uint16))
    summary = inspect_dataset(load_dataset(f"dicom:{tmp_path}?window=40,400"))
    recipe = summary["splits"]["test"]["pixel_recipe"]
    assert recipe["format"] == "DICOM" and "window center 40, width 400" in recipe["voi"]
    plain = inspect_dataset(load_dataset(str(tmp_path)))["splits"]["train"]["pixel_recipe"]
    assert "VOI LUT Sequence" in plain["voi"] and plain["frame"] is None
